#!/usr/bin/env python3
"""A frame of two views (the default: the centre square and the whole frame), back to
back in one process, run four ways in interleaved blocks so that a change in what the
shared machine is doing hits them all alike:

- ``batch2_2thr_split``: the views as one batch on a two-thread interpreter, the JPEG
  split over two cores (the default before pyai/parallel_views.py);
- ``batch2_2thr``: the same without the split decode;
- ``batch2_1thr``: the batch on one thread, decoded in one piece (one core);
- ``parallel_1thr_x2``: each view on its own one-thread interpreter, at once, decoded
  in one piece (the default now);
- ``parallel_1thr_x2_split``: the same with the split decode.

    python bench/engine/views_ab.py [--rounds 25] [--out FILE.json]

Prints and saves each way's p50 wall time and CPU (this process, every thread) per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402


def ways(clf) -> Dict[str, Callable[[bytes], np.ndarray]]:
    from pyai.batching import BatchedModel
    from pyai.parallel_views import ParallelViews

    cfg = clf.config
    batch2 = BatchedModel(cfg.model, 2, 2, content=clf.model.content)
    batch1 = BatchedModel(cfg.model, 1, 2, content=clf.model.content)
    for m in (batch2, batch1):
        m.set_batch(2)
        m.input_tensor[...] = 0
        m.run()
    lanes = ParallelViews(cfg.model, clf.model.content, 2)

    def views(frame):
        return clf.crop.views(frame.shape[1], frame.shape[0], clf.model.input_size)

    def batched(model, split: bool):
        def run(data: bytes) -> np.ndarray:
            frame = clf.decode_bytes(data, reuse=True, split=split)
            for i, box in enumerate(views(frame)):
                clf.fill(frame, model.input_slot(i), None, box)
            return clf.merge_views(model.dequantize(model.run()))
        return run

    def parallel(split: bool):
        def run(data: bytes) -> np.ndarray:
            frame = clf.decode_bytes(data, reuse=True, split=split)
            return clf.merge_views(lanes.run(views(frame), lambda box, slot: clf.fill(frame, slot, None, box)))
        return run

    return {"batch2_2thr_split": batched(batch2, True), "batch2_2thr": batched(batch2, False),
            "batch2_1thr": batched(batch1, False), "parallel_1thr_x2": parallel(False),
            "parallel_1thr_x2_split": parallel(True)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from pyai import Classifier

    assets = benchlib.ensure_assets()
    photos = [Path(p) for p in assets["photos"] if str(p).endswith(".jpg")]
    frames = [p.read_bytes() for p in photos]
    model = str(benchlib.MODELS / benchlib.DEFAULT_MODEL)
    clf = Classifier(model=model, threads=2, decode_threads=2, crop_mode="squares", crop_squares=1, crop_whole=True)
    runs = ways(clf)
    ref = runs["batch2_1thr"](frames[0])
    for name, run in runs.items():  # every way gives the same scores
        assert np.allclose(run(frames[0]), ref, atol=1e-3), name
    wall: Dict[str, List[float]] = {k: [] for k in runs}
    cpu: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            for data in frames:  # wake this way's threads first
                run(data)
            c0 = time.process_time()
            times = []
            for _ in range(2):
                for data in frames:
                    t0 = time.perf_counter()
                    run(data)
                    times.append(time.perf_counter() - t0)
            cpu[name].append((time.process_time() - c0) / len(times))
            wall[name].extend(times)
    res = {"created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "machine": benchlib.machine_info(),
           "frames": [p.name for p in photos], "rounds": args.rounds,
           "ways": {k: {"p50_ms": round(statistics.median(wall[k]) * 1e3, 3),
                        "cpu_ms_per_call": round(statistics.median(cpu[k]) * 1e3, 3)} for k in runs}}
    benchlib.report_ways(res, f"{len(frames)} photos, {args.rounds} rounds",
                         lambda k, v: f"{k:24s} p50 {v['p50_ms']:6.2f} ms  CPU {v['cpu_ms_per_call']:6.2f} ms a call",
                         args.out)
    clf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
