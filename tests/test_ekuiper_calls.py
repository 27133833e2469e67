"""bench/ekuiper/ekuiper_calls.py: the call cycle from two pyaiStats() snapshots."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from bench.ekuiper.ekuiper_calls import cycle


def snap(pid: int, calls: int, call_s: float, gaps: int, between_s: float, symbol: str = "labelImage") -> Dict[str, Any]:
    totals = {"calls": calls, "call_s": call_s, "gaps": gaps, "between_s": between_s}
    return {"process": {"pid": pid, "calls": {symbol: {"answered": calls, "errors": 0, "totals": totals}}}}


def test_the_cycle_is_the_mean_call_plus_the_mean_gap() -> None:
    before = snap(7, 100, 0.7, 99, 0.07)
    after = snap(7, 600, 0.7 + 500 * 0.007, 599, 0.07 + 500 * 0.0006)
    assert cycle(before, after, "labelImage") == {"calls": 500, "call_ms": 7.0, "between_ms": 0.6, "cycle_ms": 7.6}


@pytest.mark.parametrize("before, after", [
    (None, snap(7, 10, 0.1, 9, 0.01)),
    (snap(7, 10, 0.1, 9, 0.01), None),
    (snap(7, 10, 0.1, 9, 0.01), snap(8, 20, 0.2, 19, 0.02)),  # another process: its counters started again
    (snap(7, 10, 0.1, 9, 0.01), snap(7, 10, 0.1, 9, 0.01)),  # no call between
    (snap(7, 10, 0.1, 9, 0.01, "labelImages"), snap(7, 20, 0.2, 19, 0.02, "labelImages")),  # another symbol
])
def test_no_cycle_without_two_snapshots_of_one_process_with_calls_between(before, after) -> None:
    assert cycle(before, after, "labelImage") is None
