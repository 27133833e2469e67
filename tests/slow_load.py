"""Runs the plugin as eKuiper would (``python slow_load.py -u main.py '<json>'``), but
with its model taking PYAI_TEST_LOAD_DELAY_S (default 3) seconds longer to load,
as on a slow board: the handshake must not wait for it."""

import os
import sys
import time

args = [a for a in sys.argv[1:] if a != "-u"]
executable = os.path.abspath(args[0])
sys.path.insert(0, os.path.dirname(executable))

from pyai.plugin import main as plugin_main  # noqa: E402  (light: no NumPy yet)

DELAY_S = float(os.environ.get("PYAI_TEST_LOAD_DELAY_S", "3"))
_factory = plugin_main.Plugin._factory


def _slow_factory(self, config, config_error):
    load = _factory(self, config, config_error)

    def slow():
        time.sleep(DELAY_S)
        return load()

    return slow


plugin_main.Plugin._factory = _slow_factory
sys.exit(plugin_main.main([executable] + args[1:]))
