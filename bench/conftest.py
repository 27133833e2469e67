"""Fixtures of the pytest-benchmark suites under bench/.

    pytest bench/                                  # every suite
    pytest bench/protocol/test_bench_stages.py              # in-process stages only (fast)
    pytest bench/protocol/test_bench_e2e.py --benchmark-json=e2e.json

The end-to-end suite installs dist/pyai.zip with install.sh into a fresh venv, as
tests/conftest.py does; set PYAI_PLUGIN_PYTHON (or PYAI_BENCH_PYTHON) to an
interpreter that already has the requirements to only unpack it and use that.
PYAI_BENCH_CALLS / PYAI_BENCH_BASELINE_CALLS set the rounds of each e2e benchmark.
``python bench/protocol/report.py`` is the full side-by-side report (percentiles, ratios,
RSS, start time, accuracy, JSON + PNG).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402


@pytest.fixture(scope="session")
def bench_assets() -> Dict[str, Path]:
    """Model, labels and sample photos (fetched with sha256 checks if missing)."""
    return benchlib.ensure_assets()


@pytest.fixture(scope="session")
def frames(bench_assets) -> Dict[str, bytes]:
    """The two camera frames by short name: {"720p": jpeg bytes, "1080p": jpeg bytes}."""
    return benchlib.frame_bytes()


@pytest.fixture(scope="session")
def payloads(frames) -> Dict[str, bytes]:
    """The exact Exec request the Go host sends for labelImage(self), per frame."""
    return {name: benchlib.exec_request(data) for name, data in frames.items()}


@pytest.fixture(scope="session")
def bench_classifier(bench_assets):
    """pyai's Classifier with the packaged plugin's default config (the repo's model)."""
    from bench.protocol import stages

    clf = stages.load_classifier(None)
    yield clf
    clf.close()


@pytest.fixture(scope="session")
def plugin_env(bench_assets, tmp_path_factory) -> benchlib.PluginEnv:
    """dist/pyai.zip installed as eKuiper installs it, plus the bench plugins' settings."""
    custom = os.environ.get("PYAI_BENCH_PYTHON") or os.environ.get("PYAI_PLUGIN_PYTHON")
    return benchlib.prepare_env(tmp_path_factory.mktemp("bench-plugin"), shlex.split(custom) if custom else None)


@pytest.fixture(scope="session")
def emulated(plugin_env) -> bool:
    import json
    import subprocess

    out = subprocess.run(plugin_env.python + ["-c", "import sys; sys.path.insert(0, sys.argv[1]); import benchlib, json;"
                                              " print(json.dumps(benchlib.emulation()))", str(benchlib.COMMON)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["emulated"]


def calls_for(key: str) -> int:
    if key == "baseline":
        return int(os.environ.get("PYAI_BENCH_BASELINE_CALLS", "30"))
    return int(os.environ.get("PYAI_BENCH_CALLS", "200"))


@pytest.fixture(scope="module", params=["baseline", "sdk_const", "transport", "floor", "pyai"])
def running(request, plugin_env, emulated) -> Iterator[tuple]:
    """One bench plugin at a time (module scope + params: pytest closes one before the next)."""
    key = request.param
    spec = plugin_env.specs[key]
    if spec.needs_sdk and plugin_env.sdk_dir is None:
        pytest.skip("the ekuiper SDK is not installed here (pip install ekuiper)")
    with benchlib.running_plugin(plugin_env, spec, benchlib.host_timeout_s(emulated)) as run:
        yield key, run
