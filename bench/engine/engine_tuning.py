#!/usr/bin/env python3
"""Tune the batching engine for the machine this runs on.

    python bench/engine/engine_tuning.py                  # batch speed-ups + engine sweep
    python bench/engine/engine_tuning.py --batch-only     # one batch-N invoke vs N single invokes
    python bench/engine/engine_tuning.py --model mobilenet_v1_0.75_192_quant.tflite --seconds 2

It prints which ``batch_mode`` wins per model (set it in pyai_config.json when
it differs from what ``auto`` picks here) and the best ``workers`` / ``threads``
/ ``max_batch`` for windows of 8 frames of a 720p JPEG, the load
``SELECT labelImages(self) ... GROUP BY CountWindow(8)`` puts on the plugin.
Numbers drift when other programs share the CPU: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODELS = REPO / "models"
LABELS = MODELS / "imagenet_labels.txt"
SHIPPED = (
    "mobilenet_v2_1.0_224_quant.tflite",
    "mobilenet_v1_0.25_128_quant.tflite",
    "mobilenet_v1_0.75_192_quant.tflite",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",
)
DEFAULT_MODEL = "tf2_mobilenet_v2_1.0_224_ptq.tflite"  # pyai's default (pyai.Config)
FRAME = MODELS / "samples" / "cat_720p.jpg"
WINDOW = 8


# -- one batched invoke vs N single invokes ---------------------------------------------


@dataclass
class BatchSpeedup:
    model: str
    sha256: str
    threads: int
    batch: int
    single_ms: float  # per frame, batch-1 model, median
    batched_ms: float  # per frame, one batch-N invoke, median
    speedup: float  # median over rounds of (N single invokes) / (one batch-N invoke)
    speedup_min: float  # from each side's fastest round: the least disturbed estimate


def batch_speedup(model_path: Path, threads: int, batch: int = 8, rounds: int = 30) -> BatchSpeedup:
    """Interleave N batch-1 invokes and one batch-N invoke, round after round, so a
    noisy neighbour slows both sides alike."""
    import numpy as np

    from pyai.batching import BatchedModel, file_sha256
    from pyai.model import Model

    single = Model(str(model_path), threads)
    batched = BatchedModel(str(model_path), threads, batch)
    rng = np.random.default_rng(0)
    for m in (single, batched):
        m.input_tensor[...] = rng.integers(0, 256, m.input_tensor.shape).astype(m.input_tensor.dtype)
        for _ in range(3):
            m.run()
    a_s: List[float] = []
    b_s: List[float] = []
    ratios: List[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        t0 = clock()
        for _ in range(batch):
            single.run()
        t1 = clock()
        batched.run()
        t2 = clock()
        a_s.append(t1 - t0)
        b_s.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return BatchSpeedup(
        model=model_path.name,
        sha256=file_sha256(str(model_path)),
        threads=threads,
        batch=batch,
        single_ms=statistics.median(a_s) / batch * 1e3,
        batched_ms=statistics.median(b_s) / batch * 1e3,
        speedup=statistics.median(ratios),
        speedup_min=min(a_s) / min(b_s),
    )


# -- the engine under a window load -------------------------------------------------------


def make_classifier(model: str = DEFAULT_MODEL, threads: int = 0, **config):
    from pyai import Classifier

    return Classifier(model=str(MODELS / model), labels=str(LABELS), threads=threads, **config)


def windows_fps(label_window: Callable[[List[bytes]], list], frame: bytes, seconds: float,
                window: int = WINDOW, min_windows: int = 5) -> float:
    """Frames per second of back-to-back calls, one window at a time, as eKuiper calls."""
    frames = [frame] * window
    label_window(frames)  # warm-up: first batch sizes, lazy starts
    n = 0
    t0 = time.perf_counter()
    while True:
        label_window(frames)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= min_windows:
            return n * window / elapsed


@dataclass
class SweepPoint:
    threads: int
    workers: int  # 0: the direct path, no engine
    max_batch: int
    batch_mode: str
    fps: float  # median over passes
    fps_runs: List[float]


def sweep(
    frame: bytes,
    model: str = DEFAULT_MODEL,
    threads_list: Sequence[int] = (1, 2),
    workers_list: Sequence[int] = (1, 2, 3),
    max_batch_list: Sequence[int] = (1, 4, 8),
    seconds: float = 1.0,
    delay_ms: float = 2.0,
    passes: int = 3,
    log: Callable[[str], None] = print,
) -> List[SweepPoint]:
    """Frames/s over windows of 8 for every combination (max_batch 1 = loop), plus the
    direct path (sequential ``Classifier.label``, workers=0) per thread count.

    Every configuration is measured ``passes`` times in a shuffled round-robin, for
    ``seconds / passes`` each, and reported as the median, so load that comes and
    goes during the sweep spreads over all configurations instead of sinking a few.
    """
    from pyai.engine import Engine

    configs = [(t, 0, 1) for t in threads_list]
    configs += [(t, w, b) for t in threads_list for w, b in itertools.product(workers_list, max_batch_list)]
    runs: Dict[tuple, List[float]] = {c: [] for c in configs}
    modes: Dict[tuple, str] = {}
    classifiers = {t: make_classifier(model, t) for t in threads_list}
    rng = random.Random(0)
    try:
        for n in range(passes):
            order = configs[:]
            rng.shuffle(order)
            for cfg in order:
                threads, workers, max_batch = cfg
                clf = classifiers[threads]
                if workers == 0:
                    fps = windows_fps(lambda fs, c=clf: [c.label(x) for x in fs], frame, seconds / passes)
                    modes[cfg] = "direct"
                else:
                    mode = "loop" if max_batch == 1 else "native"
                    with Engine(clf, workers=workers, max_batch=max_batch, batch_mode=mode,
                                max_queue_delay_ms=delay_ms, stats_log_interval_s=0) as eng:
                        fps = windows_fps(lambda fs, e=eng: [f.result() for f in e.submit_many(fs)],
                                          frame, seconds / passes)
                    modes[cfg] = eng.batch_mode
                runs[cfg].append(fps)
            log(f"  pass {n + 1}/{passes} done")
    finally:
        for clf in classifiers.values():
            clf.close()
    points = [SweepPoint(t, w, b, modes[(t, w, b)], statistics.median(runs[(t, w, b)]), runs[(t, w, b)])
              for (t, w, b) in configs]
    for p in points:
        what = "direct path" if p.workers == 0 else f"workers={p.workers} max_batch={p.max_batch} ({p.batch_mode})"
        log(f"  threads={p.threads} {what:36s} {p.fps:7.1f} frames/s")
    return points


def best_engine(points: Sequence[SweepPoint]) -> SweepPoint:
    return max((p for p in points if p.workers > 0), key=lambda p: p.fps)


def best_direct(points: Sequence[SweepPoint]) -> SweepPoint:
    return max((p for p in points if p.workers == 0), key=lambda p: p.fps)


def sequential_fps(frame: bytes, model: str = DEFAULT_MODEL, threads: int = 0, seconds: float = 1.0) -> float:
    """The direct path alone: one ``Classifier.label`` after another."""
    clf = make_classifier(model, threads)
    try:
        return windows_fps(lambda fs: [clf.label(x) for x in fs], frame, seconds)
    finally:
        clf.close()


# -- report --------------------------------------------------------------------------------


def print_table(rows: Iterable[Dict[str, object]], out: Callable[[str], None] = print) -> None:
    rows = list(rows)
    if not rows:
        return
    cols = list(rows[0])
    text = [[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    out("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in text:
        out("  ".join(v.ljust(w) for v, w in zip(t, widths)))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model of the engine sweep")
    ap.add_argument("--batch-only", action="store_true", help="only measure batch-N vs N single invokes")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds per batch measurement")
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds per sweep point (over all passes)")
    ap.add_argument("--passes", type=int, default=3, help="round-robin passes of the sweep")
    ap.add_argument("--threads", default="1,2", help="interpreter threads to try")
    ap.add_argument("--workers", default="1,2,3", help="decoder threads to try")
    ap.add_argument("--max-batch", default="1,4,8", help="max_batch values to try (1 = loop)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from pyai.batching import NATIVE_MIN_SPEEDUP

    threads_list = [int(x) for x in args.threads.split(",")]
    result: Dict[str, object] = {}

    print(f"one batch-8 invoke vs 8 batch-1 invokes ({args.rounds} interleaved rounds):")
    speedups = []
    for name in SHIPPED:
        if not (MODELS / name).exists():
            continue
        for t in threads_list:
            s = batch_speedup(MODELS / name, t, 8, args.rounds)
            speedups.append(s)
            print(f"  {name:36s} threads={t}  single {s.single_ms:6.2f} ms/frame  batched {s.batched_ms:6.2f} ms/frame"
                  f"  speedup {s.speedup:.3f}x (from fastest rounds {s.speedup_min:.3f}x)"
                  f"  -> {'native' if s.speedup >= NATIVE_MIN_SPEEDUP else 'loop'}", flush=True)
    result["batch_speedups"] = [asdict(s) for s in speedups]
    table: Dict[str, Dict[int, float]] = {}
    for s in speedups:
        table.setdefault(s.sha256, {})[s.threads] = round(s.speedup, 3)
    print("MEASURED_SPEEDUP table for pyai/batching.py:")
    print(json.dumps(table, indent=1))

    if not args.batch_only:
        frame = FRAME.read_bytes()
        print(f"\nengine sweep, {args.model}, windows of {WINDOW} x {FRAME.name}:")
        points = sweep(frame, args.model, threads_list, [int(x) for x in args.workers.split(",")],
                       [int(x) for x in args.max_batch.split(",")], args.seconds, passes=args.passes)
        best, direct = best_engine(points), best_direct(points)
        print(f"\nbest: threads={best.threads} workers={best.workers} max_batch={best.max_batch} "
              f"batch_mode={best.batch_mode}: {best.fps:.1f} frames/s "
              f"({best.fps / direct.fps:.2f}x the best direct path, threads={direct.threads})")
        result.update(sweep=[asdict(p) for p in points], best=asdict(best), best_direct=asdict(direct))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
