#!/usr/bin/env python3
"""A lone 720p frame back to back, in one process: pyai's default (split or one core,
measured per call: pyai/split_policy.py) against one thread and two threads forced,
in interleaved blocks so that a change in what the machine is doing hits all three.

    python bench/engine/split_ab.py [--rounds 6] [--calls 150] [--out FILE.json]

Prints and saves each block's wall and CPU (this process, every thread) per call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402

VARIANTS = {"default": {}, "one": {"threads": 1, "decode_threads": 1}, "two": {"threads": 2, "decode_threads": 2}}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from pyai import Classifier

    assets = benchlib.ensure_assets()
    data = (assets["samples"] / "cat_720p.jpg").read_bytes()
    model, labels = str(benchlib.MODELS / benchlib.DEFAULT_MODEL), str(benchlib.MODELS / benchlib.LABELS)
    clfs = {k: Classifier(model=model, labels=labels, **kw) for k, kw in VARIANTS.items()}
    blocks: Dict[str, Dict[str, List[float]]] = {k: {"wall_ms": [], "cpu_ms": []} for k in clfs}
    for clf in clfs.values():
        for _ in range(30):
            clf.label_bytes(data)
    for _ in range(args.rounds):
        for k, clf in clfs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.calls):
                clf.label_bytes(data)
            blocks[k]["wall_ms"].append((time.perf_counter() - t0) / args.calls * 1e3)
            blocks[k]["cpu_ms"].append((time.process_time() - c0) / args.calls * 1e3)
    res = {"machine": benchlib.machine_info(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "rounds": args.rounds, "calls": args.calls, "blocks": blocks,
           "policy": clfs["default"].describe().get("lone_frame")}
    m = res["machine"]
    print(f"{m['arch']} | {m['cpu']} | {m['cores']} cores; {args.rounds} rounds of {args.calls} calls each")
    for k, b in blocks.items():
        print(f"  {k:8s} wall ms/call median {statistics.median(b['wall_ms']):.2f} "
              f"(blocks {', '.join(f'{x:.2f}' for x in b['wall_ms'])}); CPU ms/call {statistics.median(b['cpu_ms']):.2f}")
    print(f"  default's choices: {res['policy']}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
        print(f"wrote {args.out}")
    for clf in clfs.values():
        clf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
