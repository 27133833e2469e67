"""Checks that only mean something with the plugin on emulated aarch64 (`tox -e arm64`).

The protocol tests (test_plugin.py, test_hostile.py, ...) run unchanged there: the
host is x86, the plugin process aarch64. These add what is specific to the port.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = os.environ.get("PYAI_PLUGIN_PYTHON", "")

pytestmark = pytest.mark.skipif(not LAUNCHER, reason="PYAI_PLUGIN_PYTHON not set: not the arm64 run")


def test_plugin_process_is_aarch64(host):
    reply = host.exec("pyaiStats")
    assert reply.state, reply.result
    assert reply.result["model"]["machine"] == "aarch64"
    assert reply.result["model"]["resize"] == "native"


def test_c_resize_agrees_with_numpy_on_aarch64():
    res = subprocess.run(
        shlex.split(LAUNCHER) + [str(REPO / "tests" / "arm64" / "check_resize.py")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "machine: aarch64" in res.stdout
