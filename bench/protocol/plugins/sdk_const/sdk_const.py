"""The ekuiper SDK's own cost: labelImage answers a constant top-5 list and never looks
at the frame, so everything measured is the SDK's transport (json.loads of the whole
request, the debug-string formatting of it, json.dumps of the reply) plus nng."""
import os
import sys
from typing import Any, List

for _p in reversed(os.environ.get("PYAI_BENCH_PATHS", "").split(os.pathsep)):
    if _p:
        sys.path.insert(0, _p)

from ekuiper import Context, Function, PluginConfig, plugin  # noqa: E402

from benchlib import CONSTANT_RESULT  # noqa: E402


class ConstantFunc(Function):
    def validate(self, args: List[Any]):
        return ""

    def exec(self, args: List[Any], ctx: Context):
        return CONSTANT_RESULT

    def is_aggregate(self):
        return False


if __name__ == "__main__":
    plugin.start(PluginConfig("bench_sdkconst", {}, {}, {"labelImage": ConstantFunc}))
