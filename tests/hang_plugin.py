"""Runs the plugin as eKuiper would (``python hang_plugin.py -u main.py '<json>'``), with
two faults a real process can meet, set off by the frame's bytes:

- ``pyai-test-native-hang``: a native call that never returns and holds the GIL
  (``pause()`` through ``ctypes.PyDLL``, which does not release it): every thread
  of the process stops, as in a driver or library that blocks for good;
- ``pyai-test-deadlock``: the call's thread waits on a lock that is never released
  (the other threads run on).

Any other frame is labelled as usual."""

import base64
import ctypes
import os
import sys
import threading

args = [a for a in sys.argv[1:] if a != "-u"]
executable = os.path.abspath(args[0])
sys.path.insert(0, os.path.dirname(executable))

from pyai.plugin import functions  # noqa: E402
from pyai.plugin import main as plugin_main  # noqa: E402
from pyai.plugin.runtime import FrameArg  # noqa: E402

NATIVE_HANG = base64.b64encode(b"pyai-test-native-hang")
DEADLOCK = base64.b64encode(b"pyai-test-deadlock")
_exec = functions.LabelImage.exec
_lock = threading.Lock()


def _faulty_exec(self, args, meta=None):
    frame = bytes(args[0].view) if args and isinstance(args[0], FrameArg) else b""
    if frame == NATIVE_HANG:
        ctypes.PyDLL(None).pause()
    elif frame == DEADLOCK:
        _lock.acquire()
        _lock.acquire()
    return _exec(self, args, meta)


functions.LabelImage.exec = _faulty_exec
sys.exit(plugin_main.main([executable] + args[1:]))
