"""Entry point of the baseline plugin, as eKuiper's Python TFLite tutorial writes it:
the ekuiper SDK's ``plugin.start(PluginConfig(...))`` with one function, labelImage.

(The tutorial's plugin is called ``pyai``; this copy is ``bench_baseline`` so the bench
can tell it apart from the real pyai. The ekuiper SDK comes from PYAI_BENCH_PATHS,
vendored there by bench/common/benchlib.py.)
"""
import os
import sys

for _p in reversed(os.environ.get("PYAI_BENCH_PATHS", "").split(os.pathsep)):
    if _p:
        sys.path.insert(0, _p)

from ekuiper import PluginConfig, plugin  # noqa: E402

from label_func import labelIns  # noqa: E402

if __name__ == "__main__":
    # Define the plugin
    c = PluginConfig("bench_baseline", {}, {}, {"labelImage": lambda: labelIns})
    # Start the plugin instance
    plugin.start(c)
