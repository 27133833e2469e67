#!/usr/bin/env python3
"""Per-stage timings of pyai's path, in-process, in the interpreter that runs the plugin.

    python bench/protocol/stages.py [--pyai-dir DIR] [--calls N] [--out stages.json] [--profile]

``bench/protocol/report.py`` runs this with the plugin's own interpreter (the venv install.sh
made, or PYAI_PLUGIN_PYTHON), so stage numbers and end-to-end numbers come from the
same NumPy/LiteRT builds, CPU and (under qemu) the same emulator. The pytest-benchmark
suite (bench/protocol/test_bench_stages.py) times the same callables built by :func:`stage_calls`.

Stages, for one Go-style request carrying a JPEG frame:
  request   parse_request (split the Exec request, frame left as a memoryview) + b64decode
  decode    pyai.decode.decode at the classifier's decode size for the frame (libjpeg DCT
            scaling; with a crop, the size at which the crop region covers the input)
  resize    pyai.resize.resize_into, the implementation the plugin uses; also
            native_preproc.resize_into and pyai.resize.resize_into_numpy one by one
  invoke    Model.run
  results   Classifier.results (top-k + labels)
  reply     pyai.plugin.runtime.encode_reply
  in-process handle_function_request(LabelImage) end to end, no transport
  floor     simplejpeg.decode_jpeg(min_width, min_height) alone, Model.run alone

With --profile it also runs cProfile over the in-process path and prints where the
time goes.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

# Appended, not prepended: this runs with the plugin's interpreter, and pyai must
# come from the installed plugin folder (add_pyai_path), not from the repository.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench.common import benchlib  # noqa: E402


def add_pyai_path(pyai_dir: Optional[str]) -> Path:
    """Import pyai from the installed plugin folder (default: the repo)."""
    folder = Path(pyai_dir).resolve() if pyai_dir else benchlib.REPO
    sys.path.insert(0, str(folder))
    return folder


def load_classifier(pyai_dir: Optional[Path] = None):
    """The classifier exactly as the plugin builds it: the plugin folder's config, or the
    packaged default config with the repo's model when there is no installed folder."""
    from pyai import Classifier
    from pyai.config import load_config

    if pyai_dir is not None and (pyai_dir / "pyai_config.json").exists():
        cfg = load_config(pyai_dir)
    else:
        files = benchlib.REPO / "pyai" / "plugin" / "files" / "pyai_config.json"
        raw = json.loads(files.read_text())
        cfg = load_config(files, model=str(benchlib.MODELS / raw["model"]), labels=str(benchlib.MODELS / raw["labels"]))
    return Classifier(cfg)


def resize_impls() -> Dict[str, Callable[..., None]]:
    """The resize implementations available here: 'pyai' (what the plugin uses),
    'native' (native_preproc.resize_into) and 'numpy' (pyai.resize.resize_into_numpy)."""
    from pyai import resize

    impls: Dict[str, Callable[..., None]] = {"pyai": resize.resize_into}
    try:
        # A from-import: a bare ``import native_preproc`` can find the source folder
        # as an empty namespace package.
        from native_preproc import resize_into as native

        impls["native"] = native
    except ImportError:
        pass
    numpy_fn = getattr(resize, "resize_into_numpy", None)
    if numpy_fn is not None:
        impls["numpy"] = numpy_fn
    return impls


def resize_implementation() -> str:
    from pyai import resize

    return str(getattr(resize, "IMPLEMENTATION", "unknown"))


def stage_calls(clf, data: bytes) -> Dict[str, Callable[[], Any]]:
    """Zero-argument callables, one per stage, on realistic inputs for ``data`` (a JPEG)."""
    import numpy as np
    import simplejpeg

    from pyai.decode import decode, inspect
    from pyai.plugin.functions import ClassifierHolder, LabelImage
    from pyai.plugin.runtime import encode_reply, handle_function_request, parse_request
    from pyai.source import b64decode

    cfg = clf.config
    request = benchlib.exec_request(data)
    max_bytes = cfg.max_encoded_bytes
    view = parse_request(request)["arg"][0].view
    assert b64decode(view, max_bytes) == data
    frame = decode(data, clf.decode_size_for, clf.limits)
    slot = clf.model.input_slot(0)
    clf.fill(frame, slot)
    raw = np.array(clf.model.run()[0], copy=True)
    result = clf.results(raw)
    fn = LabelImage(ClassifierHolder(lambda: clf))
    # The floor decodes to the same size as pyai (its crop region's need), in one piece.
    header = inspect(data)
    min_w, min_h = clf.decode_size_for(header.width, header.height)
    mean, std = cfg.mean, cfg.std

    calls: Dict[str, Callable[[], Any]] = {
        "parse_request": lambda: parse_request(request),
        "b64decode": lambda: b64decode(view, max_bytes),
        "request": lambda: b64decode(parse_request(request)["arg"][0].view, max_bytes),
        # As labelImage decodes: into the scratch buffer, rows split over decode_threads.
        "decode": lambda: clf.decode_bytes(data, reuse=True, split=True),
        "decode_one_piece": lambda: clf.decode_bytes(data, reuse=True),
    }
    for name, impl in resize_impls().items():
        calls[f"resize_{name}"] = (lambda impl=impl: impl(frame, slot, mean=mean, std=std))
    calls.update({
        "invoke": clf.model.run,
        "results": lambda: clf.results(raw),
        "reply": lambda: encode_reply(True, result),
        "inprocess": lambda: handle_function_request(fn, request),
        "floor_decode": lambda: simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=min_w, min_height=min_h),
        # Decoding at the model's own input size, for reference (what decode_oversample costs).
        "decode_at_input_size": lambda: simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=clf.model.input.width, min_height=clf.model.input.height),
    })
    return calls


# Stages that run on the interpreter's threads. On a VM, after the single-threaded
# stages the second vCPU needs ~0.1 s to come back: the first ~15 invokes of a burst
# took 7-8 ms instead of 3.4 here. So these warm up for a time, not a count (in
# quick mode the bursts are short enough for that to double the invoke's p50).
MULTI_THREADED = ("invoke", "inprocess")
WARMUP_SECONDS = 0.2

# Which stage names make up pyai's path (in order) and the floor's.
PATH_STAGES = ["request", "decode", "resize_pyai", "invoke", "results", "reply"]
FLOOR_STAGES = ["floor_decode", "invoke"]


def measure_stages(clf, frames: Dict[str, bytes], calls: int, log=print) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for fname, data in frames.items():
        from pyai.decode import decode

        frame = decode(data, clf.decode_size_for, clf.limits)
        entry: Dict[str, Any] = {"bytes": len(data), "decoded_shape": list(frame.shape), "stages": {}}
        fns = stage_calls(clf, data)
        # Interleave: two passes over all stages, so a burst of noise hits all of them.
        samples: Dict[str, List[float]] = {k: [] for k in fns}
        for _ in range(2):
            for name, fn in fns.items():
                samples[name] += benchlib.time_calls(
                    fn, n=max(calls // 2, 5), warmup=3, min_seconds=0.02, max_seconds=2.0,
                    max_n=max(2 * calls, 10), warmup_seconds=WARMUP_SECONDS if name in MULTI_THREADED else 0.0)
        for name, xs in samples.items():
            entry["stages"][name] = benchlib.summarize(xs)
        # Raw samples (ms) so report.py can pool several rounds.
        entry["samples_ms"] = {name: [round(x * 1e3, 5) for x in xs] for name, xs in samples.items()}
        log(f"  stages {fname}: " + ", ".join(f"{k} {v['p50']:.3f}" for k, v in entry["stages"].items()) + " ms (p50)")
        out[fname] = entry
    return out


def reference_top1(clf, data: bytes) -> Dict[str, Any]:
    """Top-1 of the careful reference (pyai.reference), run by the plugin's own pyai."""
    from pyai.reference import reference_label

    return reference_label(clf, data)[0]


def reference_spread(clf, data: bytes, trials: int = 12, seed: int = 0) -> Dict[str, Any]:
    """How much the reference's own top-1 moves when its input tensor changes by +-1 LSB
    on ~16% of the values (what two correct resizes may differ by): the confidence range
    of the reference label and every top-1 label seen. A photo whose range is wider than
    the accuracy tolerance is "fragile": pass or fail on it is decided by rounding."""
    import numpy as np
    from PIL import Image

    w, h = clf.model.input_size
    ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((w, h), Image.BILINEAR)).astype(np.int16)
    rng = np.random.default_rng(seed)
    labels, confs = set(), []
    top_label = reference_top1(clf, data)["label"]
    with clf._lock:
        slot = clf.model.input_slot(0)
        for _ in range(trials):
            noise = rng.integers(-1, 2, ref.shape, dtype=np.int16) * (rng.random(ref.shape) < 0.16)
            slot[...] = np.clip(ref + noise, 0, 255)
            raw = clf.model.run()[0]
            res = clf.results(raw, 1)[0]
            labels.add(res["label"])
            if res["label"] == top_label:
                confs.append(res["confidence"])
    return {"labels": sorted(labels), "conf_min": min(confs) if confs else None,
            "conf_max": max(confs) if confs else None}


def accuracy_refs(clf, photos: List[Path], spread_trials: int = 12) -> Dict[str, Any]:
    out = {}
    for p in photos:
        data = p.read_bytes()
        ref = reference_top1(clf, data)
        mine = clf.label(data, top_k=1)[0]
        out[p.name] = {"reference": ref, "inprocess": mine,
                       "spread": reference_spread(clf, data, trials=spread_trials)}
    return out


def profile_inprocess(clf, data: bytes, n: int, top: int = 25) -> str:
    """cProfile of the in-process path (request bytes -> reply bytes), sorted by own time."""
    import cProfile
    import pstats

    fn = stage_calls(clf, data)["inprocess"]
    for _ in range(10):
        fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def run(pyai_dir: Optional[str], calls: int, photos: bool, log=print) -> Dict[str, Any]:
    folder = add_pyai_path(pyai_dir)
    info = benchlib.machine_info()
    t0 = time.perf_counter()
    clf = load_classifier(folder if pyai_dir else None)
    load_s = time.perf_counter() - t0
    info["resize_impl"] = resize_implementation()
    info["model"] = clf.describe()
    info["jpeg_decoder"] = info["model"]["jpeg_decoder"]
    info["decode_size"] = list(clf.decode_size)  # the whole frame's; each frame's is in "decoded_shape"
    info["crop"] = {"mode": clf.config.crop_mode, "fraction": clf.config.crop_fraction}
    info["decode_oversample"] = clf.config.decode_oversample
    log(f"  worker: {info['arch']} python {info['python']}, {info['model']}, resize={info['resize_impl']}")
    result: Dict[str, Any] = {"machine": info, "classifier_load_s": load_s,
                              "frames": measure_stages(clf, benchlib.frame_bytes(), calls, log)}
    if photos:
        shots = sorted(p for p in benchlib.SAMPLES.iterdir() if p.is_file() and not p.name.startswith("."))
        # Under an emulator an invoke takes ~1 s: fewer perturbation trials.
        result["accuracy"] = accuracy_refs(clf, shots, 3 if info["emulation"]["emulated"] else 12)
    clf.close()
    return result


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pyai-dir", help="import pyai (and its config) from this plugin folder (default: the repo)")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per stage and frame (default 300)")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    ap.add_argument("--no-photos", action="store_true", help="skip the accuracy references")
    ap.add_argument("--profile", choices=sorted(benchlib.FRAMES), help="cProfile the in-process path on this frame")
    ap.add_argument("--profile-calls", type=int, default=300)
    args = ap.parse_args(argv)

    log = (lambda m: print(m, file=sys.stderr, flush=True))
    if args.profile:
        folder = add_pyai_path(args.pyai_dir)
        clf = load_classifier(folder if args.pyai_dir else None)
        print(profile_inprocess(clf, benchlib.frame_bytes()[args.profile], args.profile_calls))
        clf.close()
        return 0
    res = run(args.pyai_dir, args.calls, not args.no_photos, log)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
