#!/usr/bin/env python3
"""Accuracy against speed, on photos and on camera-shaped frames.

    python bench/accuracy/accuracy.py [--quick] [--calls N] [--rounds N] [--no-timing]

For each model in ``models/`` (``models/fetch.py --all``) and each
preprocessing choice (crop mode and fraction, squares and their merge; see
``grid()``), through ``pyai.Classifier`` exactly as ``labelImage`` decodes,
crops, resizes and merges:

* top-1 and top-5 on three versions of the labelled ImageNet photos
  (``truth.csv``):
  - ``photos``: as they are (mostly 4:3, framed on their subject);
  - ``cut16x9``: each cut to 16:9 around its centre (as a landscape camera
    frames the scene), re-encoded as JPEG quality 90;
  - ``scene``: each placed at a seeded random position and scale (its height
    35-90% of the frame's, as wide as fits) in a mid-grey 1280x720 frame, JPEG
    quality 90, so the subject is not always central;
* the photos are split once, seeded (``SPLIT_SEED``), into a tuning half and a
  held-out half: choices are compared on the tuning half, the targets checked
  on the held-out half; both are reported;
* top-1 on the sample photos whose right answer is not in doubt;
* the per-frame p50 of a 720p camera frame through the plugin protocol
  (the packaged plugin installed as eKuiper does, ``tests/hostsim.py``), all
  choices interleaved over ``--rounds`` rounds so that noise spreads evenly,
  then today's default against the shipped one head to head;
* the paired difference of top-1 against today's default (``BASELINE``) on
  the held-out half: a bootstrap 95% interval.

The timing part takes /tmp/pyai-host.lock and /tmp/pyai-timing.lock itself
(it starts a stand-in host; ``--timing in-process`` times ``Classifier.label_bytes``
in this process instead and takes the timing lock alone) and runs at the
priority the bench was started with; the accuracy part before it runs
``nice`` +10 (``--no-nice`` to keep it).

Prints a table and writes ``bench/results/<arch>-accuracy.json`` and a chart
of top-1 on camera frames against ms per frame (``<arch>-accuracy.png``).

The labelled photos are ImageNet's (research use only) and are never
downloaded: point ``PYAI_SAMPLES_MIRROR`` at a folder holding them and
``truth.csv`` (columns file, index: the 0-based line of imagenet_labels.txt).
Without it the bench says so and skips.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import fcntl
import io
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402

log = logging.getLogger("pyai.bench.accuracy")

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
#: The one split of the photos into a tuning and a held-out half (fixed: never re-drawn).
SPLIT_SEED = 23
#: Seed of the scenes' positions and scales (photo i uses [SCENE_SEED, i]).
SCENE_SEED = 720
SCENE_SIZE = (1280, 720)
SCENE_HEIGHTS = (0.35, 0.9)
#: The grey of the scenes around the photo.
SCENE_GREY = 128
JPEG_QUALITY = 90
VARIANTS = ("photos", "cut16x9", "scene")
HOST_LOCK, TIMING_LOCK = "/tmp/pyai-host.lock", "/tmp/pyai-timing.lock"


@dataclass(frozen=True)
class Choice:
    """One preprocessing choice (the config keys it sets)."""

    crop_mode: str
    crop_fraction: float
    decode_oversample: float = 1.1
    crop_squares: int = 2
    crop_whole: bool = False
    crop_merge: str = "mean"

    @property
    def name(self) -> str:
        if self.crop_mode == "squares":
            return (f"squares {self.crop_squares}{' + whole' if self.crop_whole else ''} {self.crop_merge}"
                    + (f" {self.crop_fraction:g}" if self.crop_fraction != 1.0 else ""))
        return f"{self.crop_mode} {self.crop_fraction:g}"

    @property
    def whole_frame(self) -> bool:
        """Every pixel of a 16:9 frame can influence the answer."""
        if self.crop_fraction != 1.0:
            return False
        return self.crop_mode in ("stretch", "letterbox") or (
            self.crop_mode == "squares" and (self.crop_whole or self.crop_squares >= 2))

    @property
    def key(self) -> Tuple[Any, ...]:
        return dataclasses.astuple(self)

    def config(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def env(self) -> Dict[str, str]:
        return {f"PYAI_{k.upper()}": str(v) for k, v in self.config().items()}


#: Today's default on every frame (before issue 23): the baseline of every difference.
BASELINE = ("tf2_mobilenet_v2_1.0_224_ptq.tflite", Choice("stretch", 0.875))


MERGES = ("mean", "max", "confident")
#: Models that get every choice; the others (far less accurate here) the main ones.
FULL_GRID = ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "mobilenet_v2_1.0_224_quant.tflite")


def grid(model: str, quick: bool) -> List[Choice]:
    """The squash (whole frame, TF-slim's 0.875), the centre square (and its 0.875),
    the letterbox, two or three squares, the centre square with the squashed whole
    frame, and three squares with it, with each merge."""
    main = [Choice("stretch", 1.0), Choice("stretch", 0.875), Choice("aspect", 1.0),
            Choice("squares", 1.0, crop_squares=1, crop_whole=True), Choice("squares", 1.0, crop_squares=3)]
    if quick or model not in FULL_GRID:
        return main
    out = main + [Choice("aspect", 0.875), Choice("letterbox", 1.0),
                  Choice("squares", 1.0, crop_squares=3, crop_whole=True)]
    for n, whole in ((2, False), (3, False), (1, True)):
        for merge in MERGES:
            c = Choice("squares", 1.0, crop_squares=n, crop_whole=whole, crop_merge=merge)
            if c not in out:
                out.append(c)
    return out


def shipped_choice() -> Tuple[str, Choice]:
    from pyai.config import Config

    c = Config()
    return Path(c.model).name, Choice(c.crop_mode, c.crop_fraction, c.decode_oversample, c.crop_squares,
                                      c.crop_whole, c.crop_merge)


# -- data --------------------------------------------------------------------------------


def samples_folder() -> Optional[Path]:
    folder = benchlib.fetch_module()["samples_mirror"]()
    return folder if folder is not None and (folder / "truth.csv").is_file() else None


def load_truth(folder: Path) -> List[Tuple[str, int]]:
    with open(folder / "truth.csv", newline="", encoding="utf-8") as f:
        return [(row["file"], int(row["index"])) for row in csv.DictReader(f)]


def held_out(n: int) -> np.ndarray:
    """Boolean mask of the held-out half of ``n`` photos (seeded, fixed)."""
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(SPLIT_SEED).permutation(n)[: n // 2]] = True
    return mask


def _jpeg(im: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _open(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def cut_16_9(data: bytes) -> bytes:
    """The photo cut to 16:9 (landscape, as a camera frames it) around its centre, as JPEG q90."""
    im = _open(data)
    w, h = im.size
    cw, ch = (w, w * 9 // 16) if w * 9 <= h * 16 else (h * 16 // 9, h)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return _jpeg(im.crop((x0, y0, x0 + cw, y0 + ch)))


def scene(data: bytes, index: int) -> bytes:
    """The photo at a seeded random scale and position in a grey 1280x720 frame, as JPEG q90."""
    from PIL import Image

    im = _open(data)
    rng = np.random.default_rng([SCENE_SEED, index])
    sw, sh = SCENE_SIZE
    scale = min(rng.uniform(*SCENE_HEIGHTS) * sh / im.height, sw / im.width)
    w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
    x0, y0 = int(rng.integers(0, sw - w + 1)), int(rng.integers(0, sh - h + 1))
    frame = Image.new("RGB", SCENE_SIZE, (SCENE_GREY,) * 3)
    frame.paste(im.resize((w, h), Image.Resampling.LANCZOS), (x0, y0))
    return _jpeg(frame)


def models() -> List[str]:
    return [n for n in benchlib.fetch_module()["PINNED"] if n.endswith(".tflite")]


# -- accuracy, in-process through Classifier ---------------------------------------------


def label_indices(clf: Any, data: bytes) -> List[int]:
    return [int(r["label"].split(":", 1)[0]) for r in clf.label(data, top_k=5, min_confidence=0.0)]


def evaluate(model: str, choice: Choice, frames: Dict[str, List[bytes]], truth: Sequence[int],
             sure: Dict[str, Tuple[bytes, Tuple[int, ...]]]) -> Dict[str, Any]:
    """Per variant, per photo: top-1 right, top-5 right; and the sure photos."""
    from pyai import Classifier, Config

    cfg = Config(model=str(benchlib.MODELS / model), labels=str(benchlib.MODELS / benchlib.LABELS),
                 threads=2, top_k=5, **choice.config())
    clf = Classifier(cfg)
    out: Dict[str, Any] = {}
    try:
        for variant, datas in frames.items():
            got = [label_indices(clf, d) for d in datas]
            out[variant] = {"top1": [bool(g and g[0] == w) for g, w in zip(got, truth)],
                            "top5": [w in g for g, w in zip(got, truth)]}
        out["sure_photos"] = {name: label_indices(clf, data)[0] in ok for name, (data, ok) in sure.items()}
    finally:
        clf.close()
    return out


def bits(flags: Sequence[bool]) -> str:
    return "".join("1" if f else "0" for f in flags)


def paired(a: Sequence[bool], b: Sequence[bool], seed: int = 12) -> Dict[str, Any]:
    """Top-1 of a minus top-1 of b on the same photos: the difference and a bootstrap 95% interval."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (BOOTSTRAP, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)]}


def split_scores(ev: Dict[str, Any], mask: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Top-1 and top-5 of every variant on the tuning (~mask) and held-out (mask) halves."""
    out: Dict[str, Dict[str, float]] = {}
    for variant in VARIANTS:
        t1, t5 = np.asarray(ev[variant]["top1"]), np.asarray(ev[variant]["top5"])
        out[variant] = {"tune_top1": float(t1[~mask].mean()), "tune_top5": float(t5[~mask].mean()),
                        "held_top1": float(t1[mask].mean()), "held_top5": float(t5[mask].mean()),
                        "all_top1": float(t1.mean())}
    return out


# -- speed, through the plugin protocol --------------------------------------------------


@contextlib.contextmanager
def timing_locks(paths: Sequence[str], restore_nice: Optional[int]) -> Iterator[None]:
    """The machine's ``paths`` locks (as ``flock`` takes them), at the bench's starting
    priority when ``restore_nice`` says what it was."""
    files = []
    try:
        for path in paths:
            f = open(path, "a")  # noqa: SIM115 - held until the timing is done
            log.info("waiting for %s ...", path)
            fcntl.flock(f, fcntl.LOCK_EX)
            files.append(f)
        if restore_nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, restore_nice)
            except OSError as exc:
                log.warning("timing runs at nice %s (cannot restore %s: %s)", os.getpriority(os.PRIO_PROCESS, 0),
                            restore_nice, exc)
        yield
    finally:
        for f in reversed(files):
            f.close()


def interleaved(rows: List[Tuple[str, Choice]], calls: int, rounds: int,
                measure: Callable[[int, str, Choice, int], List[float]]) -> Dict[int, List[List[float]]]:
    """``measure(i, model, choice, n)``'s per-frame seconds for every row and round, rows
    in a rotating order each round so that noise spreads evenly."""
    samples: Dict[int, List[List[float]]] = {i: [] for i in range(len(rows))}
    per_round = max(1, calls // rounds)
    for r in range(rounds):
        order = list(range(len(rows)))
        for i in order[r % len(order):] + order[:r % len(order)]:
            samples[i].append(measure(i, rows[i][0], rows[i][1], per_round))
        log.info("  timing round %s/%s done", r + 1, rounds)
    return samples


def time_rows(env: Any, rows: List[Tuple[str, Choice]], calls: int, rounds: int,
              timeout: float) -> Dict[int, List[List[float]]]:
    """Per-frame seconds of the 720p frame through the plugin protocol (one plugin
    session per row and round)."""
    payload = benchlib.exec_request(benchlib.frame_bytes()["720p"])
    base = env.specs["pyai"]

    def measure(i: int, model: str, choice: Choice, n: int) -> List[float]:
        spec = dataclasses.replace(base, key=f"accuracy-{i}", extra_env={
            "PYAI_MODEL": str(benchlib.MODELS / model), **choice.env()})
        return benchlib.plugin_session(
            env, spec, timeout, lambda run: benchlib.timed_plugin_calls(run.host, payload, n, warmup=20),
            log=log.info)

    return interleaved(rows, calls, rounds, measure)


def time_rows_in_process(rows: List[Tuple[str, Choice]], calls: int, rounds: int) -> Dict[int, List[List[float]]]:
    """Per-frame seconds of the 720p frame labelled in this process (``Classifier.label_bytes``
    as ``labelImage`` calls it: decode, views, invoke, merge, top-k; no IPC), a fresh
    classifier per row and round."""
    from pyai import Classifier, Config

    data = benchlib.frame_bytes()["720p"]

    def measure(i: int, model: str, choice: Choice, n: int) -> List[float]:
        cfg = Config(model=str(benchlib.MODELS / model), labels=str(benchlib.MODELS / benchlib.LABELS),
                     **choice.config())
        with Classifier(cfg) as clf:
            return benchlib.time_calls(lambda: clf.label_bytes(data), n, warmup=20)

    return interleaved(rows, calls, rounds, measure)


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


def pct(x: float) -> str:
    return f"{100 * x:5.1f}"


def print_table(res: Dict[str, Any]) -> None:
    n, held = res["photos"], res["held_out_photos"]
    print(f"\n{n} labelled photos ({res['samples_folder_name']}), {held} held out (seed {SPLIT_SEED}); "
          f"720p p50 ({res['settings']['timing']}), {res['settings']['calls']} calls in "
          f"{res['settings']['rounds']} rounds; "
          f"CPU {res['machine']['cpu']}")
    for split in ("tune", "held"):
        print(f"\n-- {'tuning half (choose here)' if split == 'tune' else 'held-out half (the check)'}: "
              "top-1 / top-5 %; diff = 16:9 top-1 minus today's default's, bootstrap 95%")
        head = (f"{'model':30s} {'preprocessing':22s} {'all':>3s} {'photos':>11s} {'16:9 cut':>11s} {'scene':>11s} "
                f"{'p50 ms':>7s} {'x today':>7s} {'sure':>5s}  16:9 diff [95%]")
        print(head)
        print("-" * len(head))
        for row in res["rows"]:
            sc = row["scores"]
            ms = f"{row['p50_ms']:7.2f}" if row.get("p50_ms") is not None else f"{'-':>7s}"
            ratio = f"{row['p50_ratio']:7.2f}" if row.get("p50_ratio") is not None else f"{'-':>7s}"
            q = row[f"vs_baseline_{split}_16x9"]
            marks = ("*" if row.get("pareto") else " ") + ("D" if row.get("default") else " ") + (
                "T" if row.get("baseline") else " ")
            cells = " ".join(f"{pct(sc[v][split + '_top1'])}/{pct(sc[v][split + '_top5'])}" for v in VARIANTS)
            print(f"{row['model'][:-7]:30s} {row['choice_name']:22s} {'yes' if row['whole_frame'] else 'no':>3s} "
                  f"{cells} {ms} {ratio} {sum(row['sure_photos'].values()):2d}/{len(row['sure_photos'])}  "
                  f"{100 * q['diff']:+5.1f} [{100 * q['ci95'][0]:+.1f}, {100 * q['ci95'][1]:+.1f}] {marks}")
    print("all = every pixel of the frame can influence the answer; * = no other row has both a better held-out "
          "16:9 top-1 and a lower p50; D = the shipped default; T = today's default (the baseline)")
    duel = res.get("baseline_vs_shipped_p50")
    if duel:
        print(f"head to head, {len(duel['round_ratios'])} alternating rounds: shipped default {duel['p50_ms']:.2f} ms, "
              f"today's default {duel['base_p50_ms']:.2f} ms per 720p frame: {duel['ratio']:.2f}x "
              f"(rounds {min(duel['round_ratios']):.2f}-{max(duel['round_ratios']):.2f}x)")


def write_chart(res: Dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt  # benchlib.save_results set the backend
    rows = [r for r in res["rows"] if r.get("p50_ms") is not None]
    if not rows:
        return "no timings: no chart"
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5), sharex=True)
    colours = {m: c for m, c in zip(sorted({r["model"] for r in rows}), ("C0", "C1", "C2", "C3", "C4", "C5"))}
    markers = {"stretch": "o", "aspect": "s", "letterbox": "D", "squares": "^"}
    for ax, variant, title in ((axes[0], "cut16x9", "16:9 cuts"), (axes[1], "scene", "photo placed in a 720p scene")):
        for m in colours:
            for mode, mk in markers.items():
                pts = [r for r in rows if r["model"] == m and r["choice"]["crop_mode"] == mode]
                if pts:
                    ax.scatter([r["p50_ms"] for r in pts], [100 * r["scores"][variant]["held_top1"] for r in pts],
                               c=colours[m], marker=mk, alpha=0.75, label=f"{m[:-7]}, {mode}")
        for r in rows:
            y = 100 * r["scores"][variant]["held_top1"]
            if r["model"] == BASELINE[0] or r.get("default"):
                ax.annotate(r["choice_name"], (r["p50_ms"], y), fontsize=7, xytext=(4, -3), textcoords="offset points")
            if r.get("default") or r.get("baseline"):
                ax.scatter([r["p50_ms"]], [y], s=260, facecolors="none",
                           edgecolors="k" if r.get("default") else "grey", linewidths=1.5)
        ax.set_xlabel(f"720p frame, p50 ms ({res['settings']['timing']})")
        ax.set_ylabel(f"top-1 % on the {title} (held-out {res['held_out_photos']})")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, loc="lower right", ncol=2)
    m = res["machine"]
    fig.suptitle(f"pyai: accuracy on camera-shaped frames against ms per frame ({m['cpu']}, {m['cores']} cores; "
                 "black ring: shipped default, grey: today's)", fontsize=10)
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
                    help="rounds of today's vs the shipped default head to head (default 8, 150 calls each)")
    ap.add_argument("--no-timing", action="store_true", help="accuracy only (no plugin install, no ms)")
    ap.add_argument("--timing", choices=("protocol", "in-process"), default="protocol",
                    help="720p cost through the plugin protocol (a stand-in host: takes the host lock too) or of "
                         "Classifier.label_bytes in this process (the timing lock alone)")
    ap.add_argument("--no-nice", action="store_true", help="do not lower the accuracy part's priority")
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
    photos = [(folder / f).read_bytes() for f, _ in truth]
    wants = [idx for _, idx in truth]
    mask = held_out(len(photos))
    frames = {"photos": photos, "cut16x9": [cut_16_9(d) for d in photos],
              "scene": [scene(d, i) for i, d in enumerate(photos)]}
    sure = {p.name: (p.read_bytes(), SURE_TOP1[p.name]) for p in assets["photos"] if p.name in SURE_TOP1}
    rows_spec = [(m, c) for m in names for c in grid(m, args.quick)]
    shipped = shipped_choice()
    for extra in (BASELINE, shipped):
        if extra[0] in names and extra not in rows_spec:
            rows_spec.append(extra)
    if BASELINE not in rows_spec:
        raise SystemExit(f"today's default {BASELINE} is not among the rows: it is every difference's baseline")
    start_nice = os.getpriority(os.PRIO_PROCESS, 0)
    if not args.no_nice:
        os.nice(10)
    log.info("accuracy: %s rows on %s photos x %s versions ...", len(rows_spec), len(photos), len(frames))
    evals = []
    for m, c in rows_spec:
        e = evaluate(m, c, frames, wants, sure)
        sc = split_scores(e, mask)
        log.info("  %-30s %-22s tune top-1: photos %.1f%%, 16:9 %.1f%%, scene %.1f%%", m[:-7], c.name,
                 *(100 * sc[v]["tune_top1"] for v in VARIANTS))
        evals.append(e)
    base = evals[rows_spec.index(BASELINE)]

    calls = args.calls or (60 if args.quick else 240)
    timings: Dict[int, List[List[float]]] = {}
    duel: Dict[str, Any] = {}
    restore = None if args.no_nice else start_nice
    if not args.no_timing and args.timing == "in-process":
        with timing_locks([TIMING_LOCK], restore):
            log.info("720p per-frame cost in process: %s rows x %s calls ...", len(rows_spec), calls)
            timings = time_rows_in_process(rows_spec, calls, max(1, args.rounds))
            if shipped in rows_spec and shipped != BASELINE and args.duel_rounds > 0:
                log.info("today's vs the shipped default, %s rounds x 150 calls each ...", args.duel_rounds)
                d = time_rows_in_process([BASELINE, shipped], 150 * args.duel_rounds, args.duel_rounds)
                duel = head_to_head(d[1], d[0])
    elif not args.no_timing:
        with tempfile.TemporaryDirectory(prefix="pyai-accuracy-") as tmp, \
                timing_locks([HOST_LOCK, TIMING_LOCK], restore):
            env = benchlib.prepare_env(Path(tmp), [args.python] if args.python else None, log=log.info)
            log.info("720p per-frame timing through the protocol: %s rows x %s calls ...", len(rows_spec), calls)
            timings = time_rows(env, rows_spec, calls, max(1, args.rounds), benchlib.host_timeout_s(False))
            if shipped in rows_spec and shipped != BASELINE and args.duel_rounds > 0:
                # The grid's few calls a row leave 5-10% of noise on a shared machine:
                # the two defaults again, alone and alternating, for the ratio.
                log.info("today's vs the shipped default, %s rounds x 150 calls each ...", args.duel_rounds)
                d = time_rows(env, [BASELINE, shipped], 150 * args.duel_rounds, args.duel_rounds,
                              benchlib.host_timeout_s(False))
                duel = head_to_head(d[1], d[0])

    rows = []
    base_ms = None
    if timings:
        base_ms = p50_ms([x for r in timings[rows_spec.index(BASELINE)] for x in r])
    for i, ((m, c), e) in enumerate(zip(rows_spec, evals)):
        row = {"model": m, "choice": c.config(), "choice_name": c.name, "whole_frame": c.whole_frame,
               "scores": split_scores(e, mask), "sure_photos": e["sure_photos"],
               "default": (m, c) == shipped, "baseline": (m, c) == BASELINE}
        for split, sel in (("tune", ~mask), ("held", mask)):
            for v in VARIANTS:
                row[f"vs_baseline_{split}_{'16x9' if v == 'cut16x9' else v}"] = paired(
                    np.asarray(e[v]["top1"])[sel], np.asarray(base[v]["top1"])[sel])
        if i in timings:
            s = benchlib.summarize([x for r in timings[i] for x in r])
            row.update({"p50_ms": s["p50"], "p90_ms": s["p90"], "calls": s["n"], "p50_ratio": s["p50"] / base_ms})
        rows.append(row)
    if timings:
        for i in pareto([(r["scores"]["cut16x9"]["held_top1"], r["p50_ms"]) for r in rows]):
            rows[i]["pareto"] = True
    info = benchlib.machine_info()
    res = {
        "schema": 2,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "driver": {"python": platform.python_version(), "argv": sys.argv[1:] if argv is None else argv},
        "samples_folder_name": folder.name,
        "photos": len(photos),
        "held_out_photos": int(mask.sum()),
        "settings": {"calls": calls if timings else 0, "rounds": args.rounds, "bootstrap": BOOTSTRAP,
                     "timing": None if args.no_timing else args.timing,
                     "frame": benchlib.FRAMES["720p"], "split_seed": SPLIT_SEED, "scene_seed": SCENE_SEED,
                     "scene": {"size": SCENE_SIZE, "photo_height": SCENE_HEIGHTS, "grey": SCENE_GREY},
                     "jpeg_quality": JPEG_QUALITY, "baseline": [BASELINE[0], BASELINE[1].config()],
                     "shipped_default": [shipped[0], shipped[1].config()]},
        "rows": rows,
        "baseline_vs_shipped_p50": duel,
        # One character a photo, in the order of photo_files: 1 = top-1 right.
        "per_photo_top1": {f"{m} | {c.name}": {v: bits(e[v]["top1"]) for v in VARIANTS}
                           for (m, c), e in zip(rows_spec, evals)},
        "photo_files": [f for f, _ in truth],
        "held_out": bits(mask),
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
