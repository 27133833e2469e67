"""The soak's count of labelled frames (bench/soak/soak_ledger.py) over made-up results:
a CountWindow(8) whose window straddles two bursts is answered after the first burst
was counted; its frames are late, not lost, and credited to the burst they came from."""

from __future__ import annotations

from typing import List

from bench.ekuiper.ekuiper_host import RULES, Result
from bench.soak.soak_ledger import Ledger, lost_verdict, window_size

S = 1_000_000_000  # ns


def topic(tag: str, seq: int, t_ns: int) -> str:
    return f"tfdemo/{tag}/c0/{seq}/{t_ns}"


def windows_of(frames: List[tuple], n: int, answered_at: List[int]) -> List[Result]:
    """One window result per n frames (tag, seq, t_ns), arriving at answered_at[i]."""
    out = []
    for i in range(0, len(frames) - n + 1, n):
        chunk = frames[i:i + n]
        out.append(Result(answered_at[i // n], [topic(*f) for f in chunk], [True] * n, windowed=True))
    return out


def test_window_size_is_read_from_the_rule() -> None:
    assert window_size(RULES["labelImages"].sql) == 8
    assert window_size(RULES["labelImages4"].sql) == 4
    assert window_size("SELECT labelImages(self) FROM s GROUP BY countwindow( 12 )") == 12
    assert window_size(RULES["pyai"].sql) == 1


def test_a_window_straddling_two_bursts_is_late_not_lost() -> None:
    # 4 frames before the soak (a ramp of 300 frames leaves 300 % 8 = 4 in the open
    # window), then bursts a and b of 12 frames each, seq 11 of each hostile.
    n = 8
    before = [("r10", 296 + i, i) for i in range(4)]
    a = [("a", i, 10 * S + i) for i in range(12)]
    b = [("b", i, 20 * S + i) for i in range(12)]
    flush = [("flush", i, 30 * S + i) for i in range(n)]
    frames = before + a + b + flush
    # Window 0 = 4 before + a0-3 (in a's time), window 1 = a4-11 (in a's time),
    # window 2 = b0-7 (in b's time), window 3 = b8-11 + flush0-3 (after b ended, the flush).
    arrivals = [11 * S, 12 * S, 21 * S, 31 * S]
    ledger = Ledger({"labelImages": True, "pyai": False}, lambda seq: seq % 12 != 11)
    ledger.add(windows_of(frames, n, arrivals))
    a_end, b_end = 15 * S, 25 * S
    ta = ledger.tally("labelImages", "a", 12, a_end, on_time_s=2.0)
    tb = ledger.tally("labelImages", "b", 12, b_end, on_time_s=2.0)
    assert (ta["labelled"], ta["labelled_late"], ta["never_labelled"]) == (11, 0, 0)
    # b's last good frames (8, 9, 10) came with the flush window: late, not lost.
    assert (tb["labelled"], tb["labelled_late"], tb["never_labelled"]) == (8, 3, 0)
    assert tb["on_time"] == 8
    rows = [{"good": 11, "labelImages": ta}, {"good": 11, "labelImages": tb}]
    v = lost_verdict("labelImages", rows)
    assert v["ok"] and v["measured"].startswith("0 of 22 (3 labelled after")


def test_a_window_never_answered_is_lost() -> None:
    frames = [("a", i, i) for i in range(16)]
    ledger = Ledger({"labelImages": True, "pyai": False}, lambda seq: True)
    ledger.add(windows_of(frames[:8], 8, [5 * S]))  # the second window never comes
    t = ledger.tally("labelImages", "a", 16, 10 * S)
    assert (t["labelled"], t["labelled_late"], t["never_labelled"]) == (8, 0, 8)
    assert not lost_verdict("labelImages", [{"good": 16, "labelImages": t}])["ok"]


def test_errors_duplicates_and_the_per_frame_rule_apart() -> None:
    ledger = Ledger({"labelImages": True, "pyai": False}, lambda seq: seq != 3)
    ledger.add([
        Result(S, [topic("a", 0, 0)], [True]),  # labelImage: per frame
        Result(S, [topic("a", 0, 0)], [True]),  # answered twice
        Result(S, [topic("a", 3, 0)], [False]),  # the hostile frame's error
        Result(S, [topic("a", 1, 0), topic("a", 2, 0)], [True, False], windowed=True),
        Result(S, ["not/a/frame/topic/x"], [True]),
    ])
    single = ledger.tally("pyai", "a", 4, 2 * S)
    assert (single["labelled"], single["never_labelled"], single["errors"]) == (1, 2, 1)
    assert ledger.duplicates("pyai") == 1
    windowed = ledger.tally("labelImages", "a", 4, 2 * S)
    assert (windowed["labelled"], windowed["never_labelled"], windowed["errors"]) == (1, 2, 1)
