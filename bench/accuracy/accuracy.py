#!/usr/bin/env python3
"""Accuracy against speed: every model of the mirror x every preprocessing choice.

    python bench/accuracy/accuracy.py [--quick] [--calls N] [--rounds N] [--no-timing]

For each model in ``models/`` (``models/fetch.py --all``) and each
preprocessing choice (crop mode and fraction, ``decode_oversample``; see
``grid()``):

* top-1 and top-5 on the labelled ImageNet photos (``truth.csv``), through
  ``pyai.Classifier`` exactly as ``labelImage`` decodes, crops and resizes;
* the same top-1 on 16:9 cuts of those photos (each cut to 16:9 along its long
  side, centred, re-encoded as JPEG quality 95): the geometry of a camera
  frame, where squashing the whole frame and keeping only its centre square
  cost more than on ImageNet's mostly 4:3 photos;
* top-1 on the sample photos whose right answer is not in doubt;
* the per-frame p50 of a 720p camera frame through the plugin protocol
  (the packaged plugin installed as eKuiper does, ``tests/hostsim.py``), all
  choices interleaved over ``--rounds`` rounds so that noise spreads evenly;
* the paired difference of top-1 against the previous default
  (``mobilenet_v2_1.0_224_quant``, whole frame, oversample 1.1): a bootstrap
  95% interval and both split halves, so a choice is not made on noise.

Prints a table and writes ``bench/results/<arch>-accuracy.json`` and a chart
of top-1 against ms per frame (``<arch>-accuracy.png``).

The labelled photos are ImageNet's (research use only) and are never
downloaded: point ``PYAI_SAMPLES_MIRROR`` at a folder holding them and
``truth.csv`` (columns file, index: the 0-based line of imagenet_labels.txt).
Without it the bench says so and skips.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import logging
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402

log = logging.getLogger("pyai.bench.accuracy")

#: What pyai shipped before this bench chose: the baseline of every difference.
PREVIOUS = ("mobilenet_v2_1.0_224_quant.tflite", "stretch", 1.0, 1.1)

#: Sample photos whose right top-1 is not in doubt (shared/README.md), as label
#: indices; the cats may be any of tabby, tiger cat, Egyptian cat.
SURE_TOP1: Dict[str, Tuple[int, ...]] = {
    "cat_720p.jpg": (282, 283, 286),
    "cat_1080p.jpg": (282, 283, 286),
    "hot_dog.jpg": (935,),
    "grace_hopper.bmp": (653,),
    "bird.bmp": (20,),
    "sunflower.bmp": (986,),
    "dragonfly.bmp": (320,),
    "missvickie_potato_chips.bmp": (693,),
    "parrot.jpg": (89,),
}
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Choice:
    """One preprocessing choice (the config keys it sets)."""

    crop_mode: str
    crop_fraction: float
    decode_oversample: float

    @property
    def name(self) -> str:
        return f"{self.crop_mode} {self.crop_fraction:g}, oversample {self.decode_oversample:g}"

    def config(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def env(self) -> Dict[str, str]:
        return {f"PYAI_{k.upper()}": str(v) for k, v in self.config().items()}


def grid(quick: bool) -> List[Choice]:
    """Whole frame; centre crops of the frame; the input's aspect (short side) with
    and without a centre crop; each at the two oversample values worth trying
    (1.1, the previous default, and 1.0: the crops need a larger decode at 1.1)."""
    fractions = (1.0, 0.875) if quick else (1.0, 0.95, 0.875, 0.8)
    out = []
    for mode in ("stretch", "aspect"):
        for f in fractions:
            for o in (1.1, 1.0):
                out.append(Choice(mode, f, o))
    return out


# -- data --------------------------------------------------------------------------------


def samples_folder() -> Optional[Path]:
    folder = benchlib.fetch_module()["samples_mirror"]()
    return folder if folder is not None and (folder / "truth.csv").is_file() else None


def load_truth(folder: Path) -> List[Tuple[str, int]]:
    with open(folder / "truth.csv", newline="", encoding="utf-8") as f:
        return [(row["file"], int(row["index"])) for row in csv.DictReader(f)]


def cut_16_9(data: bytes) -> bytes:
    """The photo cut to 16:9 along its long side (centred), as JPEG quality 95."""
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    long_, short = max(w, h), min(w, h)
    if long_ * 9 > short * 16:  # wider than 16:9 already: cut the long side instead
        long_ = short * 16 // 9
    else:
        short = long_ * 9 // 16
    cw, ch = (long_, short) if w >= h else (short, long_)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    buf = io.BytesIO()
    im.crop((x0, y0, x0 + cw, y0 + ch)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def models() -> List[str]:
    return [n for n in benchlib.fetch_module()["PINNED"] if n.endswith(".tflite")]


# -- accuracy, in-process through Classifier ---------------------------------------------


def label_indices(clf: Any, data: bytes) -> List[int]:
    return [int(r["label"].split(":", 1)[0]) for r in clf.label(data, top_k=5, min_confidence=0.0)]


def evaluate(model: str, choice: Choice, photos: Sequence[Tuple[bytes, int]], wide: Sequence[bytes],
             sure: Dict[str, Tuple[bytes, Tuple[int, ...]]]) -> Dict[str, Any]:
    from pyai import Classifier, Config

    cfg = Config(model=str(benchlib.MODELS / model), labels=str(benchlib.MODELS / benchlib.LABELS),
                 threads=2, top_k=5, **choice.config())
    clf = Classifier(cfg)
    try:
        top1, top5 = [], []
        for data, want in photos:
            got = label_indices(clf, data)
            top1.append(bool(got and got[0] == want))
            top5.append(want in got)
        wide1 = [label_indices(clf, data)[0] == want for data, (_, want) in zip(wide, photos)]
        sure_hits = {name: label_indices(clf, data)[0] in ok for name, (data, ok) in sure.items()}
    finally:
        clf.close()
    return {"top1": float(np.mean(top1)), "top5": float(np.mean(top5)), "correct": top1,
            "top1_16x9": float(np.mean(wide1)), "correct_16x9": wide1, "sure_photos": sure_hits}


def bits(flags: Sequence[bool]) -> str:
    return "".join("1" if f else "0" for f in flags)


def paired(a: Sequence[bool], b: Sequence[bool], seed: int = 12) -> Dict[str, float]:
    """Top-1 of a minus top-1 of b on the same photos: the difference, a bootstrap 95%
    interval, and the difference on each half (even / odd rows)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (BOOTSTRAP, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)],
            "half_even": float(d[0::2].mean()), "half_odd": float(d[1::2].mean())}


# -- speed, through the plugin protocol --------------------------------------------------


def time_rows(env: Any, rows: List[Tuple[str, Choice]], calls: int, rounds: int,
              timeout: float) -> Dict[int, List[List[float]]]:
    """Per-frame seconds of the 720p frame for every row and round (one plugin session
    per row and round, rows in a rotating order each round)."""
    payload = benchlib.exec_request(benchlib.frame_bytes()["720p"])
    base = env.specs["pyai"]
    samples: Dict[int, List[List[float]]] = {i: [] for i in range(len(rows))}
    per_round = max(1, calls // rounds)
    for r in range(rounds):
        order = list(range(len(rows)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            model, choice = rows[i]
            spec = dataclasses.replace(base, key=f"accuracy-{i}", extra_env={
                "PYAI_MODEL": str(benchlib.MODELS / model), **choice.env()})
            xs = benchlib.plugin_session(
                env, spec, timeout, lambda run: benchlib.timed_plugin_calls(run.host, payload, per_round, warmup=20),
                log=log.info)
            samples[i].append(xs)
        log.info("  timing round %s/%s done", r + 1, rounds)
    return samples


def p50_ms(xs: Sequence[float]) -> float:
    return benchlib.summarize(xs)["p50"]


def head_to_head(rounds: List[List[float]], base: List[List[float]]) -> Dict[str, Any]:
    """p50 of a row over all rounds, its ratio to the base row's, and the ratio in each round."""
    pooled = [x for r in rounds for x in r]
    pooled_base = [x for r in base for x in r]
    return {"p50_ms": p50_ms(pooled), "base_p50_ms": p50_ms(pooled_base),
            "ratio": p50_ms(pooled) / p50_ms(pooled_base),
            "round_ratios": [p50_ms(a) / p50_ms(b) for a, b in zip(rounds, base)]}


# -- report ------------------------------------------------------------------------------


def pareto(points: List[Tuple[float, float]]) -> List[int]:
    """Indices of the rows no other row beats on both accuracy (higher) and ms (lower)."""
    front = []
    for i, (acc, ms) in enumerate(points):
        if not any((a >= acc and m <= ms) and (a > acc or m < ms) for j, (a, m) in enumerate(points) if j != i):
            front.append(i)
    return front


def print_table(res: Dict[str, Any]) -> None:
    rows = res["rows"]
    n = res["photos"]
    print(f"\n{n} labelled photos ({res['samples_folder_name']}); 720p p50 through the protocol, "
          f"{res['settings']['calls']} calls in {res['settings']['rounds']} rounds; "
          f"diff = top-1 minus the previous default's, bootstrap 95% interval, split halves")
    head = (f"{'model':30s} {'preprocessing':28s} {'top-1':>6s} {'top-5':>6s} {'16:9':>6s} {'p50 ms':>7s} {'sure':>5s}"
            "  diff [95%]  halves  16:9 diff [95%]")
    print(head)
    print("-" * len(head))
    for row in rows:
        p = row["vs_previous"]
        ms = f"{row['p50_ms']:7.2f}" if row.get("p50_ms") is not None else f"{'-':>7s}"
        marks = ("*" if row.get("pareto") else " ") + ("D" if row.get("default") else " ") + ("P" if row.get("previous") else " ")
        q = row["vs_previous_16x9"]
        print(f"{row['model'][:-7]:30s} {row['choice_name']:28s} {100 * row['top1']:5.1f}% {100 * row['top5']:5.1f}% "
              f"{100 * row['top1_16x9']:5.1f}% {ms} "
              f"{sum(row['sure_photos'].values()):2d}/{len(row['sure_photos'])}  {100 * p['diff']:+5.1f} "
              f"[{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}] {100 * p['half_even']:+.1f}/{100 * p['half_odd']:+.1f}"
              f"  {100 * q['diff']:+5.1f} [{100 * q['ci95'][0]:+.1f}, {100 * q['ci95'][1]:+.1f}] {marks}")
    print("* = no other row is both more accurate and faster; D = the shipped default; P = the previous default")
    duel = res.get("previous_vs_shipped_p50")
    if duel:
        print(f"head to head, {len(duel['round_ratios'])} alternating rounds: shipped default {duel['p50_ms']:.2f} ms, "
              f"previous {duel['base_p50_ms']:.2f} ms per 720p frame: {duel['ratio']:.2f}x "
              f"(rounds {min(duel['round_ratios']):.2f}-{max(duel['round_ratios']):.2f}x)")


def write_chart(res: Dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt  # benchlib.save_results set the backend
    rows = [r for r in res["rows"] if r.get("p50_ms") is not None]
    if not rows:
        return "no timings: no chart"
    fig, ax = plt.subplots(figsize=(10, 6.5))
    colours = {m: c for m, c in zip(sorted({r["model"] for r in rows}), ("C0", "C1", "C2", "C3", "C4", "C5"))}
    markers = {"stretch": "o", "aspect": "s"}
    for m in colours:
        for mode, mk in markers.items():
            pts = [r for r in rows if r["model"] == m and r["choice"]["crop_mode"] == mode]
            if pts:
                ax.scatter([r["p50_ms"] for r in pts], [100 * r["top1"] for r in pts], c=colours[m], marker=mk,
                           alpha=0.75, label=f"{m[:-7]}, {mode}")
    for r in rows:
        if r.get("pareto"):
            ax.annotate(r["choice_name"], (r["p50_ms"], 100 * r["top1"]), fontsize=7, xytext=(4, -3),
                        textcoords="offset points")
        if r.get("default") or r.get("previous"):
            ax.scatter([r["p50_ms"]], [100 * r["top1"]], s=260, facecolors="none",
                       edgecolors="k" if r.get("default") else "grey", linewidths=1.5)
            text = "shipped default" if r.get("default") else "previous default"
            duel = res.get("previous_vs_shipped_p50")
            if duel:  # the grid's one reading is noisier than the head to head
                text += f" (head to head {duel['p50_ms' if r.get('default') else 'base_p50_ms']:.2f} ms)"
            ax.annotate(text, (r["p50_ms"], 100 * r["top1"]), fontsize=9, xytext=(6, 8), textcoords="offset points")
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["p50_ms"])
    ax.plot([r["p50_ms"] for r in front], [100 * r["top1"] for r in front], "k--", lw=0.8, label="best choices (Pareto front)")
    ax.set_xlabel("720p frame through the plugin protocol, p50 ms")
    ax.set_ylabel(f"top-1 % on {res['photos']} labelled ImageNet photos")
    m = res["machine"]
    ax.set_title(f"pyai: accuracy against ms per frame ({m['arch']}, {m['cores']} cores)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer choices and calls")
    ap.add_argument("--calls", type=int, help="timed 720p calls per row, over all rounds (full 240, quick 60)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    ap.add_argument("--duel-rounds", type=int, default=8,
                    help="rounds of the previous vs the shipped default head to head (default 8, 150 calls each)")
    ap.add_argument("--no-timing", action="store_true", help="accuracy only (no plugin install, no ms)")
    ap.add_argument("--models", help="comma-separated model files (default: every pinned model)")
    ap.add_argument("--python", help="run the plugin with this interpreter instead of installing it (see report.py)")
    ap.add_argument("--out-dir", type=Path, default=benchlib.RESULTS)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)

    folder = samples_folder()
    if folder is None:
        log.warning("accuracy bench SKIPPED: it needs the labelled ImageNet photos, which cannot be downloaded "
                    "(research use only). Set PYAI_SAMPLES_MIRROR to a folder holding them and truth.csv.")
        return 0
    t0 = time.perf_counter()
    names = args.models.split(",") if args.models else models()
    benchlib.fetch_module()["fetch"](names + [benchlib.LABELS], quiet=True)
    assets = benchlib.ensure_assets()
    truth = load_truth(folder)
    photos = [((folder / f).read_bytes(), idx) for f, idx in truth]
    wide = [cut_16_9(data) for data, _ in photos]
    sure = {p.name: (p.read_bytes(), SURE_TOP1[p.name]) for p in assets["photos"] if p.name in SURE_TOP1}
    choices = grid(args.quick)
    rows_spec = [(m, c) for m in names for c in choices]
    log.info("accuracy: %s models x %s choices on %s photos ...", len(names), len(choices), len(photos))
    evals = []
    for m, c in rows_spec:
        e = evaluate(m, c, photos, wide, sure)
        log.info("  %-30s %-28s top-1 %.1f%% top-5 %.1f%% 16:9 top-1 %.1f%%", m[:-7], c.name, 100 * e["top1"],
                 100 * e["top5"], 100 * e["top1_16x9"])
        evals.append(e)

    from pyai.config import Config

    shipped = Config()
    default_key = (Path(shipped.model).name, shipped.crop_mode, shipped.crop_fraction, shipped.decode_oversample)
    keys = [(m, c.crop_mode, c.crop_fraction, c.decode_oversample) for m, c in rows_spec]
    if PREVIOUS not in keys:
        raise SystemExit(f"the previous default {PREVIOUS} is not among the rows: it is every difference's baseline")
    prev = evals[keys.index(PREVIOUS)]

    calls = args.calls or (60 if args.quick else 240)
    timings: Dict[int, List[List[float]]] = {}
    duel: Dict[str, Any] = {}
    tmp = None
    if not args.no_timing:
        tmp = tempfile.TemporaryDirectory(prefix="pyai-accuracy-")
        try:
            env = benchlib.prepare_env(Path(tmp.name), [args.python] if args.python else None, log=log.info)
            log.info("720p per-frame timing through the protocol: %s rows x %s calls ...", len(rows_spec), calls)
            timings = time_rows(env, rows_spec, calls, max(1, args.rounds), benchlib.host_timeout_s(False))
            if default_key in keys and args.duel_rounds > 0:
                # The grid's few calls a row leave 5-10% of noise on a shared machine:
                # the two defaults again, alone and alternating, for the ratio.
                duel_rows = [rows_spec[keys.index(PREVIOUS)], rows_spec[keys.index(default_key)]]
                log.info("previous vs shipped default, %s rounds x 150 calls each ...", args.duel_rounds)
                d = time_rows(env, duel_rows, 150 * args.duel_rounds, args.duel_rounds, benchlib.host_timeout_s(False))
                duel = head_to_head(d[1], d[0])
        finally:
            tmp.cleanup()

    rows = []
    for i, ((m, c), e) in enumerate(zip(rows_spec, evals)):
        row = {"model": m, "choice": c.config(), "choice_name": c.name, "top1": e["top1"], "top5": e["top5"],
               "top1_16x9": e["top1_16x9"], "sure_photos": e["sure_photos"],
               "vs_previous": paired(e["correct"], prev["correct"]),
               "vs_previous_16x9": paired(e["correct_16x9"], prev["correct_16x9"]),
               "default": keys[i] == default_key, "previous": keys[i] == PREVIOUS}
        if i in timings:
            s = benchlib.summarize([x for r in timings[i] for x in r])
            row.update({"p50_ms": s["p50"], "p90_ms": s["p90"], "calls": s["n"]})
        rows.append(row)
    if timings:
        for i in pareto([(r["top1"], r["p50_ms"]) for r in rows]):
            rows[i]["pareto"] = True
    # The shipped default against its runner-ups: the same paired statistics.
    default_vs: Dict[str, Any] = {}
    if default_key in keys:
        d = evals[keys.index(default_key)]
        for i, (m, c) in enumerate(rows_spec):
            if keys[i] != default_key:
                default_vs[f"{m[:-7]} | {c.name}"] = {
                    "photos": paired(d["correct"], evals[i]["correct"]),
                    "16x9": paired(d["correct_16x9"], evals[i]["correct_16x9"])}
    info = benchlib.machine_info()
    res = {
        "schema": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "driver": {"python": platform.python_version()},
        "samples_folder_name": folder.name,
        "photos": len(photos),
        "settings": {"calls": calls if timings else 0, "rounds": args.rounds, "bootstrap": BOOTSTRAP,
                     "frame": benchlib.FRAMES["720p"], "previous_default": PREVIOUS, "shipped_default": default_key},
        "rows": rows,
        "default_vs_others": default_vs,
        "previous_vs_shipped_p50": duel,
        # One character a photo, in the order of photo_files: 1 = top-1 right.
        "per_photo_correct": {f"{m} | {c.name}": bits(e["correct"]) for (m, c), e in zip(rows_spec, evals)},
        "per_photo_correct_16x9": {f"{m} | {c.name}": bits(e["correct_16x9"]) for (m, c), e in zip(rows_spec, evals)},
        "photo_files": [f for f, _ in truth],
        "bench_seconds": time.perf_counter() - t0,
    }
    print_table(res)
    if not args.no_save:
        benchlib.save_results(res, args.out_dir, benchlib.results_stem(info) + "-accuracy", write_chart,
                              lambda msg: log.info("%s", msg))
    log.info("accuracy bench took %.0f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
