"""What a perfect unchanged-frame gate could reuse on the gate study's still kinds of
scene, given the model's own answers with the gate off.

The oracle knows every frame's gate-off answer in advance. It may reuse a whole
scene of a still kind (indoor, outdoor, low contrast, night, model unsure,
flickering light), from the scene's third frame on (the first runs, one more has
to see it), with the one answer that agrees with most of the scene's frames; it
picks the scenes so that each 240-frame sequence keeps strict top-1 agreement
>= 99% (gate_study.agrees). Any rule that decides per scene from the model's runs
reuses at most this. The implied speed-up over all eight kinds takes the cost of a
reused frame from the study's own saved run (its indoor row: reuse share and
speed-up, the same part) and the moving object's and the pan's reuse as the study
measured them at the defaults.

    python bench/gate/gate_oracle.py        # after tox -e gate (reads its results)

In-process, no timing: the model runs once on every frame, as in the study.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import product
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402
from bench.gate import gate_sequences, gate_study  # noqa: E402
from pyai import Classifier  # noqa: E402

STILL = ("indoor", "outdoor", "low contrast", "night", "model unsure", "flickering light")
# The frames of a scene the oracle cannot reuse: the first (run) and the one that sees it again.
LEAD_IN = 2


def scene_misses(obs: Dict[str, list], start: int, end: int) -> Tuple[int, int]:
    """The fewest strict misses of one answer reused on frames start+LEAD_IN..end-1 of
    a scene (the best of the scene's own top-1 answers), and how many frames that is."""
    frames = range(start + LEAD_IN, end)
    best = min(sum(not gate_study.agrees(obs, i, answer, strict=True) for i in frames)
               for answer in set(obs["top1"][start:end]))
    return best, len(frames)


def oracle_share(obs: Dict[str, list], per_scene: int) -> Tuple[float, List[int]]:
    """The largest share of a sequence's frames reusable by whole scenes with at most
    1% strict misses, and each scene's misses if reused."""
    n = len(obs["top1"])
    scenes = [scene_misses(obs, s, min(n, s + per_scene)) for s in range(0, n, per_scene)]
    budget = int((1 - gate_study.TARGET_AGREEMENT) * n + 1e-9)
    best = 0
    for pick in product((False, True), repeat=len(scenes)):
        misses = sum(m for (m, _), p in zip(scenes, pick) if p)
        if misses <= budget:
            best = max(best, sum(k for (_, k), p in zip(scenes, pick) if p))
    return best / n, [m for m, _ in scenes]


def saved_rows(results: Path, part: str) -> Dict[str, dict]:
    """The study's rows of ``part`` at its chosen values: sequence -> {reused, speedup}."""
    data = json.loads(results.read_text())
    chosen = tuple(data["chosen"][k] for k in gate_study.KEYS)
    out = {}
    for row in data["parts"].get(part, []):
        at = gate_study.grid_at(gate_study.saved_grid(data, row), chosen)
        out[row["sequence"]] = {"reused": at["gate_share"], "speedup": row.get("speedup")}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="held-out,held-out 2,held-out 3,held-out 4")
    ap.add_argument("--results", type=Path, help="the study's results (default bench/results/<arch>-gate.json)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    results = args.results or benchlib.RESULTS / f"{benchlib.results_stem(benchlib.machine_info())}-gate.json"

    assets = benchlib.ensure_assets()
    sys.path.insert(0, str(REPO / "models"))
    from fetch import samples_mirror  # noqa: E402

    with Classifier(model=str(assets["model"]), labels=str(assets["labels"]), threads=2) as clf:
        plan = gate_study.parts(clf, assets["samples"], samples_mirror(), False, ["tuning"] + parts)
        for part in parts:
            saved = saved_rows(results, part)
            print(f"{part}:")
            shares = {}
            for kind in STILL:
                item = plan[part].get(kind)
                if item is None:
                    continue
                jpegs = gate_sequences.all_frames(item["spec"], assets["samples"], item["seed"])
                obs = gate_study.observe(clf, jpegs)
                share, misses = oracle_share(obs, gate_sequences.SCENE_FRAMES)
                shares[kind] = share
                had = saved.get(kind, {}).get("reused")
                print(f"  {kind:18s} oracle reuses {share:6.1%}; each scene's misses if reused: {misses}"
                      + (f"; the gate at its defaults: {had:.1%}" if had is not None else ""))
            indoor = saved.get("indoor")
            moving, pan = saved.get("small moving object"), saved.get("slow pan")
            if indoor and indoor["speedup"] and moving and pan and len(shares) == len(STILL):
                r, s = indoor["reused"], indoor["speedup"]
                cost = (1 / s - (1 - r)) / r  # a reused frame, in model runs
                times = [1 - x * (1 - cost) for x in list(shares.values()) + [moving["reused"], pan["reused"]]]
                print(f"  a reused frame costs {cost:.3f} of a run (the study's indoor row: {r:.1%} reused, {s:.2f}x); "
                      f"all eight kinds with the oracle's still kinds: {len(times) / sum(times):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
