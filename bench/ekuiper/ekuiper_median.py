#!/usr/bin/env python3
"""The median of several ``bench-ekuiper`` runs: each target's ratio, the highest held
rates, what the cores allow, pyai alone through the protocol, and the sizing table.

    python bench/ekuiper/ekuiper_median.py RUN1.json RUN2.json RUN3.json

Every ratio is formed within its own run first (the machine is shared and noisy:
numbers of different runs are never divided by each other), then the median is taken.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def median(xs: List[Optional[float]]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(x: Optional[float], digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt(xs: List[Optional[float]], digits: int = 1) -> str:
    """The median of ``xs`` and each run's value."""
    return f"{num(median(xs), digits)} (runs: {', '.join(num(x, digits) for x in xs)})"


def summary(runs: List[Dict[str, Any]]) -> List[str]:
    from bench.ekuiper.ekuiper_bench import cores_limit

    for r in runs:  # recomputed: runs saved before a field was added get it too
        r["cores_limit"] = {k: v for k in r["loads"] if (k in ("pyai", "labelImages4", "labelImages")
                                                         or k.startswith("pyai_"))
                            and (v := cores_limit(r, k, r["machine"]["cores"])) is not None}
    out = []
    m = runs[0]["machine"]
    out.append(f"{len(runs)} runs on {m['arch']} | {m['cpu']} | {m['cores']} cores; created "
               + ", ".join(r["created"] for r in runs))
    out.append("targets (median of the per-run ratios):")
    for t in runs[0]["targets"]:
        xs = [next((u["ratio"] for u in r["targets"] if u["target"] == t["target"]), None) for r in runs]
        goal = t["goal"]
        med = median(xs)
        ok = None
        if med is not None and goal.startswith(">="):
            ok = med >= float(goal.split()[1].rstrip("x"))
        elif med is not None and goal.startswith("<="):
            ok = med <= float(goal.split()[1].rstrip("x"))
        out.append(f"  {'MET ' if ok else ('MISS' if ok is False else 'info')}  {t['target']:75s} {fmt(xs, 2)}  goal {goal}")
    out.append("highest held rate, frames/s:")
    for key in runs[0]["highest_held"]:
        out.append(f"  {key:20s} {fmt([r['highest_held'].get(key) for r in runs])}")
    out.append("what the cores allow, frames/s (and the held rate's ratio to it):")
    for key in runs[0].get("cores_limit", {}):
        lims = [r.get("cores_limit", {}).get(key) for r in runs]
        out.append(f"  {key:20s} {fmt([x and x['limit_fps'] for x in lims])}; ratio {fmt([x and x['ratio'] for x in lims], 2)}; "
                   f"plugin CPU ms/frame {fmt([x and x['plugin_cpu_ms'] for x in lims], 2)}; kuiperd+mosquitto "
                   f"{fmt([x and x['kuiperd_mosquitto_cpu_ms'] for x in lims], 2)}")
        out.append(f"  {'':20s} with the cores left by other jobs, the generator and the bench "
                   f"({fmt([x and x['cores_left'] for x in lims], 2)}): {fmt([x and x['limit_left_fps'] for x in lims])}; "
                   f"ratio {fmt([x and x['ratio_left'] for x in lims], 2)}")
    for key in ("protocol_alone", "protocol_alone_one_thread"):
        pas = [r.get(key) for r in runs]
        out.append(f"{key}: p50 ms {fmt([p and p['p50'] for p in pas], 2)}; frames/s {fmt([p and p['fps'] for p in pas])}; "
                   f"plugin CPU ms/frame {fmt([p and p.get('cpu_ms_per_frame') for p in pas], 2)}; machine busy "
                   f"{fmt([p and p.get('machine_busy_share', 0) * 100 for p in pas], 0)}%")
    out.append("sizing (median over runs): held/s, CPU ms/frame plugin | kuiperd | mosquitto, cameras at 30/15/5 fps")
    keys = [s["key"] for s in runs[0].get("sizing", [])]
    for key in keys:
        rows = [next((s for s in r.get("sizing", []) if s["key"] == key), None) for r in runs]
        held = median([s and s["held_fps"] for s in rows])
        cams = "/".join(str(int(held // fps)) for fps in (30, 15, 5)) if held else "-"
        out.append(f"  {key:24s} held {fmt([s and s['held_fps'] for s in rows])}; p99 ms {fmt([s and s['p99_ms'] for s in rows])}; "
                   f"CPU {num(median([s and s['cpu_ms']['plugin'] for s in rows]), 2)} | "
                   f"{num(median([s and s['cpu_ms']['kuiperd'] for s in rows]), 2)} | "
                   f"{num(median([s and s['cpu_ms']['mosquitto'] for s in rows]), 2)}; cameras {cams}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print(__doc__)
        return 2
    for line in summary([json.loads(p.read_text()) for p in paths]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
