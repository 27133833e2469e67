"""pytest-benchmark: end to end through the protocol harness, side by side per frame.

Each row is one plugin process started by the host emulator (one at a time), timed
from the host's send to the reply, on the exact request the Go host sends:

  baseline   the tutorial's plugin (ekuiper SDK, interpreter loaded per call, PIL)
  sdk_const  the SDK answering a constant: the SDK's own transport cost
  transport  pyai's runtime answering a constant: the transport floor
  floor      pyai's runtime + bare scaled decode + bare invoke, constant reply
  pyai       the packaged plugin, installed with install.sh

``python bench/protocol/report.py`` turns the same measurements into ratios and percentiles.
"""

from __future__ import annotations

import pytest

from bench.common import benchlib
from bench.conftest import calls_for


@pytest.mark.parametrize("fname", list(benchlib.FRAMES))
def test_e2e(benchmark, running, payloads, fname):
    key, run = running
    payload = payloads[fname]
    reply, _ = benchlib.call(run.host, payload)  # a real answer before timing
    assert isinstance(reply, list) and reply and "label" in reply[0]
    channel = run.host.functions[benchlib.SYMBOL]
    benchmark.group = f"e2e {fname}"
    benchmark.extra_info.update({"plugin": key, "frame": fname, "start_to_handshakes_s": run.start_seconds})
    n = calls_for(key)
    benchmark.pedantic(channel.request, args=(payload,), rounds=n, iterations=1,
                       warmup_rounds=2 if key == "baseline" else 10)
    intruders = run.intruders()
    assert not intruders, f"another process joined this host's IPC sockets, timings are not ours: {intruders}"
