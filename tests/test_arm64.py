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
    # setup.sh cross-builds native_jpeg against the root's libjpeg-turbo.
    assert reply.result["model"]["jpeg_decoder"] == "native_jpeg, 2 threads"
    assert reply.result["model"]["gate_signature"] == "native_dcsig"


def _run_emulated(script: str, timeout: float) -> None:
    """One of tests/arm64/check_*.py under the emulated python; it must pass on aarch64."""
    res = subprocess.run(
        shlex.split(LAUNCHER) + [str(REPO / "tests" / "arm64" / script)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=timeout,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "machine: aarch64" in res.stdout


def test_c_resize_agrees_with_numpy_on_aarch64():
    _run_emulated("check_resize.py", 600)


def test_split_jpeg_decode_equals_simplejpeg_on_aarch64():
    _run_emulated("check_jpeg.py", 900)


def test_dc_cell_means_are_libjpegs_on_one_and_two_cores_on_aarch64():
    _run_emulated("check_dcsig.py", 600)
