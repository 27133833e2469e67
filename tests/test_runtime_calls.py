"""CallCounts: what pyaiStats says about each symbol's calls (counts, pyai's time, the host's)."""

from __future__ import annotations

import threading

import pytest

from pyai.plugin import runtime
from pyai.plugin.runtime import CallCounts, encode_reply


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(runtime.time, "perf_counter", c)
    return c


def test_call_and_between_times_split_each_cycle(clock: Clock) -> None:
    calls = CallCounts()

    def handler(buf: bytearray, n: int) -> bytes:
        clock.now += 0.006  # pyai's 6 ms
        return encode_reply(True, [])

    run = calls.timed(handler)
    for _ in range(10):
        run(bytearray(), 0)
        clock.now += 0.001  # the host's 1 ms before the next request
    snap = calls.snapshot()
    assert (snap["answered"], snap["errors"]) == (10, 0)
    assert snap["call_ms"] == {"n": 10, "mean": 6.0, "p50": 6.0, "p90": 6.0, "p99": 6.0}
    assert snap["between_ms"] == {"n": 9, "mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}
    assert snap["totals"] == {"calls": 10, "call_s": 0.06, "gaps": 9, "between_s": 0.009}


def test_an_error_reply_and_a_raising_handler_are_timed_too(clock: Clock) -> None:
    calls = CallCounts()
    run = calls.timed(lambda buf, n: encode_reply(False, "bad frame"))
    run(bytearray(), 0)

    def boom(buf: bytearray, n: int) -> bytes:
        clock.now += 0.002
        raise RuntimeError("never reaches the host")

    with pytest.raises(RuntimeError):
        calls.timed(boom)(bytearray(), 0)
    snap = calls.snapshot()
    assert (snap["answered"], snap["errors"]) == (0, 1)
    assert snap["call_ms"]["n"] == 2 and snap["call_ms"]["p99"] == 2.0


def test_no_calls_no_percentiles() -> None:
    assert CallCounts().snapshot() == {"answered": 0, "errors": 0, "call_ms": {}, "between_ms": {},
                                       "totals": {"calls": 0, "call_s": 0.0, "gaps": 0, "between_s": 0.0}}


def test_percentiles_keep_the_latest_window(clock: Clock) -> None:
    calls = CallCounts()
    step = {"s": 0.010}

    def handler(buf: bytearray, n: int) -> bytes:
        clock.now += step["s"]
        return encode_reply(True, 1)

    run = calls.timed(handler)
    for _ in range(CallCounts.WINDOW):
        run(bytearray(), 0)
    step["s"] = 0.001
    for _ in range(CallCounts.WINDOW):
        run(bytearray(), 0)
    snap = calls.snapshot()
    assert snap["call_ms"]["p99"] == 1.0
    # The totals keep every call, the window only the last ones.
    assert snap["totals"]["calls"] == 2 * CallCounts.WINDOW
    assert snap["totals"]["call_s"] == pytest.approx(CallCounts.WINDOW * 0.011)


def test_snapshot_while_calls_run() -> None:
    """pyaiStats reads from another thread while the symbol's thread appends."""
    calls = CallCounts()
    run = calls.timed(lambda buf, n: encode_reply(True, 1))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            run(bytearray(), 0)

    t = threading.Thread(target=serve)
    t.start()
    try:
        for _ in range(2000):
            snap = calls.snapshot()
            assert snap["call_ms"] == {} or snap["call_ms"]["n"] <= CallCounts.WINDOW
    finally:
        stop.set()
        t.join()
    assert calls.answered > 0
