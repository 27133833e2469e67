"""Replay one gate-study sequence frame by frame and show every frame whose reused
answer does not agree with full inference (strictly): how old the reused answer is
(frames since the model ran on the frame it came from), how far the frame has moved
from that frame by the gate's own rule (changed cells, the median cell, the
correlation), and the model's lead on both frames.

    python bench/gate/gate_replay.py --part held-out --kind "slow pan"

In-process, no timing: the model runs once on every frame (as the study does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.common import benchlib  # noqa: E402
from bench.gate import gate_sequences, gate_study  # noqa: E402
from pyai import Classifier  # noqa: E402
from pyai.gate import (DEFAULT_CHECK_EVERY, DEFAULT_CONFIRM_LEAD, DEFAULT_CONFIRM_RUNS,  # noqa: E402
                       DEFAULT_THRESHOLD, MIN_CELLS, residuals)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="held-out")
    ap.add_argument("--kind", default="slow pan")
    ap.add_argument("--all", action="store_true", help="print every frame, not only the misses")
    ap.add_argument("--crop-mode", help="another crop than the config's default (e.g. stretch, the default until #23)")
    ap.add_argument("--crop-fraction", type=float)
    ap.add_argument("--confirm-lead", type=float, default=DEFAULT_CONFIRM_LEAD)
    ap.add_argument("--confirm-runs", type=int, default=DEFAULT_CONFIRM_RUNS)
    ap.add_argument("--check-every", type=int, default=DEFAULT_CHECK_EVERY)
    args = ap.parse_args(argv)

    assets = benchlib.ensure_assets()
    sys.path.insert(0, str(REPO / "models"))
    from fetch import samples_mirror  # noqa: E402

    crop = {k: v for k, v in (("crop_mode", args.crop_mode), ("crop_fraction", args.crop_fraction)) if v is not None}
    clf = Classifier(model=str(assets["model"]), labels=str(assets["labels"]), threads=2, **crop)
    item = gate_study.parts(clf, assets["samples"], samples_mirror(), quick=False)[args.part][args.kind]
    jpegs = gate_sequences.all_frames(item["spec"], assets["samples"], item["seed"])
    obs = gate_study.observe(clf, jpegs)
    clf.close()
    sigs = gate_study.signatures(jpegs, obs["boxes"])
    r = gate_study.replay(sigs, obs, DEFAULT_THRESHOLD, MIN_CELLS, args.confirm_lead, args.confirm_runs,
                          args.check_every)
    print(f"{args.part} / {args.kind}: {len(jpegs)} frames, reused {r['gate_share']:.1%}, "
          f"strict agreement {r['top1_agreement_strict']:.2%}")
    print(f"{'frame':>5s} {'from':>5s} {'age':>4s} {'cells>thr':>9s} {'max r-allow':>11s} {'median r':>8s} "
          f"{'corr':>7s} {'lead':>6s} {'src lead':>8s}  answer / model's top-1, top-2")
    for i, src in enumerate(r["sources"]):
        ok = gate_study.agrees(obs, i, obs["top1"][src], strict=True)
        if ok and not args.all:
            continue
        res, allow, corr = residuals(sigs[i], sigs[src])
        over = int(np.count_nonzero(res - allow > DEFAULT_THRESHOLD))
        print(f"{i:5d} {src:5d} {i - src:4d} {over:9d} {float((res - allow).max()):11.2f} "
              f"{float(np.median(res)):8.2f} {corr:7.4f} {obs['leads'][i]:6.3f} {obs['leads'][src]:8.3f}  "
              f"{obs['top1'][src]} / {obs['top1'][i]}, {obs['top2'][i]}{'' if ok else '  MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
