"""pyai's answers against MediaPipe Tasks' ImageClassifier, the runtime MediaPipe Model Maker
checks its exports with: same model file, same photos, top-1 of each (docs/own-model.md).

    python tests/own_model_reference.py MODEL.tflite [MODEL ...] --images DIR_OR_FILES...

Needs ``mediapipe`` beside pyai's requirements (a venv of its own: it is not a pyai
dependency). pyai runs with no labels/mean/std (all from the model's metadata) and
the whole frame (``crop_fraction=1.0``, as MediaPipe); ``--tiny`` adds the test suite's
colour classifiers (tests/tiny_models.py), whose metadata the tests write.
Exit status 1 if a top-1 differs, unless the photo is named with ``--fragile``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def mediapipe_top(model: Path, image: Path) -> Tuple[str, float]:
    import mediapipe as mp
    from mediapipe.tasks import python as mpt
    from mediapipe.tasks.python import vision

    opts = vision.ImageClassifierOptions(base_options=mpt.BaseOptions(model_asset_path=str(model)), max_results=1)
    with vision.ImageClassifier.create_from_options(opts) as clf:
        top = clf.classify(mp.Image.create_from_file(str(image))).classifications[0].categories[0]
    return f"{top.index}:{top.category_name}", float(top.score)


def tiny_cases(folder: Path) -> List[Tuple[Path, Path]]:
    from tests import tiny_models as tm

    cases = []
    for name, rgb in (("red", (240, 20, 30)), ("blue", (20, 30, 235))):
        (folder / f"{name}.jpg").write_bytes(tm.solid_jpeg(rgb))
    for it, ot, sm in (("uint8", "uint8", False), ("uint8", "float32", True), ("float32", "uint8", False),
                       ("float32", "float32", True)):
        model = folder / f"tiny_{it}_{ot}{'_softmax' if sm else ''}.tflite"
        model.write_bytes(tm.build(it, ot, softmax=sm))
        cases += [(model, folder / "red.jpg"), (model, folder / "blue.jpg")]
    return cases


def save(path: Path, rows: list, argv: List[str]) -> None:
    import json
    import platform
    import subprocess
    import time
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "")
    path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpu": cpu, "python": platform.python_version(),
        "versions": {p: version(p) for p in ("mediapipe", "ai-edge-litert", "numpy")},
        "command": "python tests/own_model_reference.py " + " ".join(argv), "rows": rows,
    }, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--images", nargs="*", type=Path, default=[])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--fragile", nargs="*", default=[], help="photos whose top-1 may differ (decision boundaries)")
    ap.add_argument("--save", type=Path, help="also write the rows as JSON here, with the machine and versions")
    args = ap.parse_args(argv)
    from pyai import Classifier

    photos: List[Path] = []
    for p in args.images:
        photos += sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
    cases = [(m, p) for m in args.models for p in photos]
    tmp = tempfile.TemporaryDirectory()
    if args.tiny:
        cases = tiny_cases(Path(tmp.name)) + cases
    print("| model | photo | pyai top-1 | conf | MediaPipe top-1 | score | same |")
    print("|---|---|---|---|---|---|---|")
    differ = []
    rows = []
    for model, photo in cases:
        with Classifier(model=str(model), threads=2, crop_fraction=1.0, top_k=1) as clf:
            top = clf.label(photo.read_bytes())[0]
        ref, score = mediapipe_top(model, photo)
        same = top["label"] == ref
        if not same and photo.name not in args.fragile:
            differ.append((model.name, photo.name))
        print(f"| {model.name} | {photo.name} | {top['label'][:40]} | {top['confidence']:.3f} | {ref[:40]} | "
              f"{score:.3f} | {'yes' if same else 'NO'} |")
        rows.append({"model": model.name, "photo": photo.name, "pyai": top["label"], "pyai_confidence":
                     round(top["confidence"], 4), "mediapipe": ref, "mediapipe_score": round(score, 4), "same": same})
    if args.save:
        save(args.save, rows, sys.argv[1:])
    print(f"\n{len(cases) - len(differ)}/{len(cases)} top-1 agree (fragile photos not counted as differing: "
          f"{args.fragile or 'none'})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
