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


def _run_emulated(script: str, timeout: float, *args: str) -> str:
    """One of tests/arm64/check_*.py under the emulated python; it must pass on aarch64."""
    res = subprocess.run(
        shlex.split(LAUNCHER) + [str(REPO / "tests" / "arm64" / script), *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=timeout,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "machine: aarch64" in res.stdout
    return res.stdout


def test_c_resize_agrees_with_numpy_on_aarch64():
    _run_emulated("check_resize.py", 600)


def test_split_jpeg_decode_equals_simplejpeg_on_aarch64():
    _run_emulated("check_jpeg.py", 900)


def test_dc_cell_means_are_libjpegs_on_one_and_two_cores_on_aarch64():
    _run_emulated("check_dcsig.py", 600)


def test_gate_verdicts_and_signatures_are_the_same_on_aarch64(images, tmp_path):
    """Frame pairs encoded here (x86-64): the aarch64 walker gives the same cell means
    bit for bit and the gate the same verdicts, on one core and two."""
    import json

    from tests.arm64.check_gate import verdicts
    from tests.test_gate_verdicts import frame_pairs

    for what, ref, frame in frame_pairs(images):
        name = what.replace(" ", "_").replace("%", "pc").replace("+", "p").replace("-", "m")
        (tmp_path / f"{name}.ref.jpg").write_bytes(ref)
        (tmp_path / f"{name}.jpg").write_bytes(frame)
    here = verdicts(tmp_path)
    out = _run_emulated("check_gate.py", 900, str(tmp_path))
    there = json.loads(next(line for line in out.splitlines() if line.startswith("result: "))[len("result: "):])
    assert there == here
    assert all(len(set(v["changed"])) == 1 for v in here.values())
