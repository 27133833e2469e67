"""Whether a lone frame is split over the cores or run on one: measured, not assumed.

labelImage's calls come one at a time, so a lone frame can use a second core only
by splitting its own work: the JPEG's rows over ``native_jpeg``'s helper and the
invoke over XNNPACK's thread pool. On an idle machine that lowers the latency and
raises the rate a serial caller gets. On a busy one (kuiperd, the broker and the
cameras on the same cores, or anyone else's jobs) it costs: the pool's worker
spin-waits between operators and stalls at every operator's barrier until it gets
a core, so the frame takes longer than on one core and more CPU.

So the classifier keeps both paths (a second, one-thread interpreter) and times
them on the calls themselves: most calls take the faster path, and every
``period`` calls ``probes`` take the other one to keep its time current. Splitting
must win by ``margin`` (it always costs more CPU, so a tie goes to one core).
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict


@dataclass
class SplitPolicy:
    """Chooses, call by call, between splitting a lone frame (True) and one core (False)."""

    period: int = 120  # calls on the chosen path between two probes of the other one
    probes: int = 8  # consecutive calls of a probe (the first after a switch wakes the pool)
    keep: int = 16  # recent call times kept per path
    margin: float = 0.9  # split only while its median time is below this x one core's
    _times: Dict[bool, Deque[float]] = field(init=False, repr=False)
    _calls: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    counts: Dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0}, init=False)

    def __post_init__(self) -> None:
        self._times = {True: deque(maxlen=self.keep), False: deque(maxlen=self.keep)}

    def _best(self) -> bool:
        split, single = self._times[True], self._times[False]
        return statistics.median(split) < self.margin * statistics.median(single)

    def choose(self) -> bool:
        """The path of the next call."""
        with self._lock:
            split, single = self._times[True], self._times[False]
            if len(split) < self.probes or len(single) < self.probes:
                # Learning: a probe's worth of calls on each path, split first.
                choice = len(split) < self.probes
            else:
                self._calls += 1
                best = self._best()
                choice = (not best) if self._calls % (self.period + self.probes) >= self.period else best
            self.counts[choice] += 1
            return choice

    def record(self, split: bool, seconds: float) -> None:
        with self._lock:
            self._times[split].append(seconds)

    def stats(self) -> Dict[str, object]:
        with self._lock:
            med = {k: (statistics.median(v) * 1e3 if v else None) for k, v in self._times.items()}
            return {"split_calls": self.counts[True], "one_core_calls": self.counts[False],
                    "split_ms": med[True], "one_core_ms": med[False]}
