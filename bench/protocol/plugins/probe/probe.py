"""The installed pyai plugin, unchanged, plus one extra symbol for the soak test.

Runs the installed plugin's own ``pyai.plugin.main.main`` with the plugin folder's
config; the only differences are the plugin name (``bench_probe``, so its control
address is its own) and a ``benchProbe()`` function added to the symbol table. It
answers, after a full gc.collect(), the interpreter's live object counts, so the
soak can see per-call growth of Python objects without touching pyai's code.
"""
import gc
import os
import sys
import threading

for _p in reversed(os.environ.get("PYAI_BENCH_PATHS", "").split(os.pathsep)):
    if _p:
        sys.path.insert(0, _p)

import pyai.plugin.functions as functions  # noqa: E402
import pyai.plugin.main as pyai_main  # noqa: E402


def _rss_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Probe:
    def validate(self, args):
        return ""

    def is_aggregate(self):
        return False

    def exec(self, args):
        gc.collect()
        return {
            "gc_objects": len(gc.get_objects()),
            "allocated_blocks": sys.getallocatedblocks(),
            "threads": threading.active_count(),
            "rss_kb": _rss_kb(),
        }


_build = functions.build_functions


def build_functions(holder, *rest):
    table = dict(_build(holder, *rest))
    table["benchProbe"] = Probe
    return table


if __name__ == "__main__":
    functions.build_functions = build_functions
    pyai_main.PLUGIN_NAME = "bench_probe"
    sys.exit(pyai_main.main(sys.argv, plugin_dir=os.environ["PYAI_BENCH_PYAI_DIR"]))
