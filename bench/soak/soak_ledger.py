"""The soak's count of labelled frames: every good frame's first label, by rule, camera
burst (its tag) and sequence number, over the whole run.

A window rule (``GROUP BY CountWindow(n)``) answers a frame only when its window
fills, so when a burst's frame count is not a multiple of n the window open at a
burst's end holds that burst's last frames and closes with the next burst's first
ones: its result arrives after the burst was counted. Counting by what arrived in a
burst's own time called those frames lost (issue #20's soak: 3 an interval). Here a
frame counts as labelled whenever its result arrives before the run ends, credited
to the burst it was published in, and the late ones are reported apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from bench.common import benchlib
from bench.ekuiper.ekuiper_host import parse_frame_topic

_COUNT_WINDOW = re.compile(r"\bCountWindow\s*\(\s*(\d+)", re.IGNORECASE)


def window_size(sql: str) -> int:
    """Frames per call of a rule: ``CountWindow(n)``'s n, 1 for a rule without one."""
    m = _COUNT_WINDOW.search(sql)
    return int(m.group(1)) if m else 1


@dataclass
class _Rule:
    labels: Dict[str, Dict[int, Tuple[int, float]]] = field(default_factory=dict)  # tag -> seq -> (arrived_ns, latency s)
    errors: Dict[str, int] = field(default_factory=dict)  # tag -> frames answered with an error
    duplicates: int = 0  # good frames labelled more than once


class Ledger:
    """Results in, per-burst counts out. ``rules``: rule key -> whether it is a window
    rule (its results carry ``topics``); at most one rule of each kind. ``is_good``:
    whether the frame of a sequence number is a good one (hostile frames are expected
    to be answered with an error and are not counted as labelled)."""

    def __init__(self, rules: Dict[str, bool], is_good: Callable[[int], bool]) -> None:
        self._key = {windowed: key for key, windowed in rules.items()}
        if len(self._key) != len(rules):
            raise ValueError("one rule of each kind (windowed, per frame)")
        self._rules = {key: _Rule() for key in rules}
        self.is_good = is_good

    def add(self, results: Iterable[Any]) -> None:
        """Record results (ekuiper_host.Result: arrived_ns, topics, ok, windowed)."""
        for r in results:
            key = self._key.get(r.windowed)
            if key is None:
                continue
            rule = self._rules[key]
            for topic, ok in zip(r.topics, r.ok):
                parsed = parse_frame_topic(topic)
                if parsed is None:
                    continue
                tag, _, seq, t_ns = parsed
                if not ok:
                    rule.errors[tag] = rule.errors.get(tag, 0) + 1
                elif self.is_good(seq):
                    seen = rule.labels.setdefault(tag, {})
                    if seq in seen:
                        rule.duplicates += 1
                    else:
                        seen[seq] = (r.arrived_ns, (r.arrived_ns - t_ns) / 1e9)

    def duplicates(self, key: str) -> int:
        return self._rules[key].duplicates

    def tally(self, key: str, tag: str, published: int, ended_ns: int, on_time_s: Optional[float] = None
              ) -> Dict[str, Any]:
        """One rule's count of a burst of ``published`` frames whose own time ended at
        ``ended_ns``: good frames labelled by then, labelled later, never labelled (as
        far as the results recorded so far go); p50/p99 publish -> label over every
        label of the burst; ``on_time``: labels within ``on_time_s``."""
        rule = self._rules[key]
        labels = rule.labels.get(tag, {})
        good = sum(1 for seq in range(published) if self.is_good(seq))
        mine = [labels[seq] for seq in range(published) if seq in labels]
        in_time = sum(1 for arrived, _ in mine if arrived <= ended_ns)
        lat = sorted(x for _, x in mine)
        out: Dict[str, Any] = {"labelled": in_time, "labelled_late": len(mine) - in_time,
                               "never_labelled": good - len(mine), "errors": rule.errors.get(tag, 0)}
        if on_time_s is not None:
            out["on_time"] = sum(1 for x in lat if x <= on_time_s)
        out["p50_s"] = round(benchlib.quantile(lat, 0.5), 4) if lat else None
        out["p99_s"] = round(benchlib.quantile(lat, 0.99), 4) if lat else None
        return out


def lost_verdict(key: str, intervals: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Issue #20's "0 good frames lost" for one rule: frames never labelled by the end
    of the run; the late ones are named beside it."""
    never = sum(r[key]["never_labelled"] for r in intervals)
    late = sum(r[key]["labelled_late"] for r in intervals)
    good = sum(r["good"] for r in intervals)
    return {"target": f"{key}: good frames never labelled = 0",
            "measured": f"{never} of {good} ({late} labelled after their interval ended)", "ok": never == 0}
