"""The transport floor: pyai's own runtime (pyai.plugin.runtime) serving a labelImage
that answers a constant top-5 list. Measures nng + request split + reply encoding,
i.e. what any plugin built on pyai's runtime pays before doing any work."""
import os
import sys

for _p in reversed(os.environ.get("PYAI_BENCH_PATHS", "").split(os.pathsep)):
    if _p:
        sys.path.insert(0, _p)

from benchlib import CONSTANT_RESULT  # noqa: E402
from constant import Constant  # noqa: E402 - beside this file
from pyai.plugin.runtime import PluginRuntime  # noqa: E402

if __name__ == "__main__":
    PluginRuntime("bench_transport", {"labelImage": lambda: Constant(CONSTANT_RESULT)}).run()
