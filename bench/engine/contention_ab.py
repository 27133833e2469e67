#!/usr/bin/env python3
"""What other processes' CPU on the same cores does to one labelImage call.

Inside kuiperd, pyai's call takes longer than alone (bench-ekuiper's "while
publishing" line against the protocol alone). Beside it, kuiperd, mosquitto and the
cameras use about a quarter of one core at pyai's held rate, in short bursts (a
frame received, a result published). This runs the default classifier in one
process, back to back on the bench's photos, with nothing else, then beside
``burners`` processes that each spin ``burst`` ms every ``period`` ms, in
interleaved rounds, so the difference is that CPU alone.

    python bench/engine/contention_ab.py [--rounds 6] [--calls 150] [--out FILE.json]

Prints and saves each way's mean / p50 / p90 ms a call.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402

# name: (burner processes, period ms, burst ms); share of one core = n x burst / period
WAYS: Dict[str, Tuple[int, float, float]] = {
    "alone": (0, 1.0, 0.0),
    "beside 25% of a core (0.25 ms every 1 ms)": (1, 1.0, 0.25),
    "beside 50% of a core (2 x 0.5 ms every 2 ms)": (2, 2.0, 0.5),
}


def burn(period_ms: float, burst_ms: float) -> None:
    period, burst = period_ms / 1e3, burst_ms / 1e3
    while True:
        t = time.perf_counter()
        while time.perf_counter() - t < burst:
            pass
        time.sleep(max(0.0, period - burst))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=150, help="calls per way and round")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--burn", nargs=2, type=float, metavar=("PERIOD_MS", "BURST_MS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.burn:
        burn(*args.burn)
        return 0
    from bench.protocol.stages import load_classifier

    assets = benchlib.ensure_assets()
    frames = [Path(p).read_bytes() for p in assets["photos"] if str(p).endswith("720p.jpg")]
    clf = load_classifier(None)  # the default config, as the plugin builds it
    times: Dict[str, List[float]] = {k: [] for k in WAYS}
    for _ in range(args.rounds):
        for name, (n, period, burst) in WAYS.items():
            burners = [subprocess.Popen([sys.executable, __file__, "--burn", str(period), str(burst)])
                       for _ in range(n)]
            try:
                time.sleep(0.3 if burners else 0.0)
                for i in range(args.calls):
                    t0 = time.perf_counter()
                    clf.label(frames[i % len(frames)])
                    times[name].append(time.perf_counter() - t0)
            finally:
                for p in burners:
                    p.kill()
                    p.wait()
    clf.close()

    def summary(xs: List[float]) -> Dict[str, float]:
        ms = benchlib.summarize(xs)
        return {f"{k}_ms": round(ms[k], 3) for k in ("mean", "p50", "p90")}

    res = {"created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "machine": benchlib.machine_info(),
           "frames": len(frames), "rounds": args.rounds, "calls": args.calls,
           "ways": {k: {"burners": WAYS[k][0], "period_ms": WAYS[k][1], "burst_ms": WAYS[k][2], **summary(v)}
                    for k, v in times.items()}}
    benchlib.report_ways(res, f"{args.rounds} rounds of {args.calls} calls a way",
                         lambda k, v: f"{k:46s} mean {v['mean_ms']:6.2f}  p50 {v['p50_ms']:6.2f}  "
                                      f"p90 {v['p90_ms']:6.2f} ms a call", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
