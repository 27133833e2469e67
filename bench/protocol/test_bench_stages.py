"""pytest-benchmark: each stage of pyai's path, in-process, on the 720p and 1080p frames.

Groups put alternatives side by side: ``resize`` holds pyai.resize.resize_into (what
the plugin uses), native_preproc.resize_into and pyai.resize.resize_into_numpy;
``decode`` holds pyai.decode.decode and the floor's bare simplejpeg call.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest

from bench.common import benchlib
from bench.protocol import stages

STAGES = ["request", "parse_request", "b64decode", "decode", "floor_decode", "resize_pyai", "resize_native",
          "resize_numpy", "invoke", "results", "reply", "inprocess"]
GROUPS = {"floor_decode": "decode", "resize_pyai": "resize", "resize_native": "resize", "resize_numpy": "resize",
          "parse_request": "request", "b64decode": "request"}


@pytest.fixture(scope="module", params=list(benchlib.FRAMES))
def stage_fns(request, bench_classifier, frames) -> Tuple[str, Dict[str, Callable]]:
    return request.param, stages.stage_calls(bench_classifier, frames[request.param])


@pytest.mark.parametrize("stage", STAGES)
def test_stage(benchmark, stage_fns, stage):
    fname, fns = stage_fns
    if stage not in fns:
        pytest.skip(f"{stage} is not available here (native_preproc not installed?)")
    benchmark.group = f"{fname} {GROUPS.get(stage, stage)}"
    benchmark.extra_info["frame"] = fname
    benchmark.extra_info["resize_impl"] = stages.resize_implementation()
    benchmark(fns[stage])
