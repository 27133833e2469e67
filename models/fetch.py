#!/usr/bin/env python3
"""Place models and labels in this folder, each checked against its sha256.

Order of sources: the mirror folder named by ``PYAI_MODELS_MIRROR`` (or
``--mirror``; photos: ``PYAI_IMAGES_MIRROR``, else ``images/`` beside the models
mirror), then the public download URL. Nothing is written unless its
hash matches, so a partial or tampered download never lands.

The labelled ImageNet photos of the accuracy bench (``bench/accuracy/accuracy.py``) are
for research use only and are never downloaded: ``PYAI_SAMPLES_MIRROR`` names
a folder holding them and their ``truth.csv`` (``samples_mirror()``).

    python models/fetch.py                 # default model + labels
    python models/fetch.py --all           # every pinned classifier
    python models/fetch.py --images        # the sample photos, into models/samples/
    python models/fetch.py --tutorial      # the tutorial's mobilenet_v1_1.0_224_quant (zip)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Optional

HERE = Path(__file__).resolve().parent
CORAL = "https://github.com/google-coral/test_data/raw/master/"
MIRROR_ENV = "PYAI_MODELS_MIRROR"

# name -> sha256 (all from google-coral/test_data, Apache-2.0). The default,
# tf2_mobilenet_v2_1.0_224_ptq (TF2 MobileNet v2, post-training quantized with
# per-channel int8 weights, uint8 in and out, the same 1001 labels), was chosen
# on bench/accuracy/accuracy.py: more accurate than the previous default (README,
# Accuracy), and its invoke took 1.73 ms against 3.55 on one thread here.
PINNED: Dict[str, str] = {
    "mobilenet_v2_1.0_224_quant.tflite": "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
    "imagenet_labels.txt": "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
    "mobilenet_v1_0.25_128_quant.tflite": "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785",
    "mobilenet_v1_0.75_192_quant.tflite": "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite": "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
}
DEFAULT = ["tf2_mobilenet_v2_1.0_224_ptq.tflite", "imagenet_labels.txt"]

# Sample photos for the demo and the bench (same repository; Open Images CC BY 2.0,
# a CC Flickr photo, U.S. Navy public domain): fetched into models/samples/.
IMAGES: Dict[str, str] = {
    "bird.bmp": "3fd22d6ed352b8e721d9982e38ed655f8429e168bb53ad205c6f3cdfa848e994",
    "cat_1080p.jpg": "d579b80cadf3b2ee71743b1a9c1c0fe75b8077b7a454cb320adc0a11a41829e2",
    "cat_720p.jpg": "cfb1dbdf64b30de79104a47555ff8e9f12737a12c2128ecd0e7f38531a8c13ce",
    "dragonfly.bmp": "bb42efbdd3ef1a06cc17cc4db862373be91d74eec2fcdeeb6665247a3ae6ce52",
    "face.jpg": "270e2bb9a1dce26a042baea93dbc4118d2f9b243c822ae5687ced52715048c56",
    "grace_hopper.bmp": "c43444bf3b1b1e3080551ca194bd231da4b67f20fc91454502915a6b806b614f",
    "hot_dog.jpg": "ed6952e022eb71c0d0b1ff068dcee3abed056dfa1852f041c35f138c4ff15b2e",
    "kite_and_cold.jpg": "87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e",
    "missvickie_potato_chips.bmp": "4b7dd9bce3b42df118482074fc33047ed8ee7f8facad711bb03fe4437b9e0a55",
    "owl.jpg": "ea9a0e3943bbd0acaeb472a6e66e777d13cf76646f9e42e84cafa931cc8a5bf7",
    "parrot.jpg": "a8fba9e7e29439fa414c13129aad661f2289ff891231920a7c33641b076f1833",
    "pets.jpg": "3d71034f8a910bc71c744d3191b652c6c09e9e9c703e4dcd97f1c5ef7adbfe82",
    "sunflower.bmp": "896b5e31cee42ebe32ee91251fc42041ca03c767fe02bd7ebc0e37d45f4a45b2",
}
SAMPLES = HERE / "samples"
IMAGES_MIRROR_ENV = "PYAI_IMAGES_MIRROR"
SAMPLES_MIRROR_ENV = "PYAI_SAMPLES_MIRROR"
# Beside a checkout whose parent holds shared/models and shared/images (this
# project's CI layout), those are used as mirrors when no variable names one.
_NEIGHBOUR = HERE.parent.parent / "shared"

# The tutorial's model: a zip holding the .tflite and its labels. Its hash is
# not pinned here (it could not be downloaded where this was written), so the
# zip is checked for the two expected members and the hashes are printed for
# the user to pin with --tutorial-sha256.
TUTORIAL_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/models/tflite/"
    "mobilenet_v1_1.0_224_quant_and_labels.zip"
)
TUTORIAL_MEMBERS = {
    "mobilenet_v1_1.0_224_quant.tflite": "mobilenet_v1_1.0_224_quant.tflite",
    "labels_mobilenet_quant_v1_224.txt": "labels_mobilenet_quant_v1_224.txt",
}


class FetchError(RuntimeError):
    pass


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URLs
        return resp.read()


def _write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)


def fetch_one(name: str, dest_dir: Path, mirror: Optional[Path], quiet: bool = False) -> Path:
    """Make ``dest_dir/name`` hold the pinned bytes; returns its path."""
    want = PINNED.get(name) or IMAGES[name]
    dest = dest_dir / name
    if dest.exists() and sha256_of(dest.read_bytes()) == want:
        return dest
    tried = []
    if mirror is not None:
        src = mirror / name
        if src.is_file():
            data = src.read_bytes()
            if sha256_of(data) == want:
                _write_atomic(dest, data)
                if not quiet:
                    print(f"{name}: copied from mirror, sha256 ok")
                return dest
            tried.append(f"mirror copy has sha256 {sha256_of(data)}")
        else:
            tried.append(f"not in mirror {mirror}")
    try:
        data = _download(CORAL + name)
    except OSError as exc:
        tried.append(f"download failed: {exc}")
        raise FetchError(f"{name}: " + "; ".join(tried)) from None
    if sha256_of(data) != want:
        raise FetchError(f"{name}: downloaded sha256 {sha256_of(data)} != pinned {want}")
    _write_atomic(dest, data)
    if not quiet:
        print(f"{name}: downloaded, sha256 ok")
    return dest


def fetch_tutorial(dest_dir: Path, expected_zip_sha256: Optional[str] = None) -> None:
    data = _download(TUTORIAL_URL)
    digest = sha256_of(data)
    if expected_zip_sha256 and digest != expected_zip_sha256:
        raise FetchError(f"tutorial zip sha256 {digest} != expected {expected_zip_sha256}")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = {Path(n).name: n for n in zf.namelist()}
        for member, out in TUTORIAL_MEMBERS.items():
            if member not in names:
                raise FetchError(f"tutorial zip lacks {member}")
            blob = zf.read(names[member])
            _write_atomic(dest_dir / out, blob)
            print(f"{out}: sha256 {sha256_of(blob)}")
    print(f"tutorial zip sha256 {digest} (pin it with --tutorial-sha256)")


def default_mirror(env_name: str, neighbour: str) -> Optional[Path]:
    if os.environ.get(env_name):
        return Path(os.environ[env_name])
    if neighbour == "images" and os.environ.get(MIRROR_ENV):
        return Path(os.environ[MIRROR_ENV]).parent / "images"
    candidate = _NEIGHBOUR / neighbour
    return candidate if candidate.is_dir() else None


def samples_mirror() -> Optional[Path]:
    """The folder of labelled ImageNet photos (``truth.csv`` beside them), or None.

    Never downloaded (ImageNet's photos are for research use only): it is
    ``$PYAI_SAMPLES_MIRROR``, else ``imagenet-samples/`` beside the models
    mirror or in the neighbouring ``shared/`` folder, when one holds truth.csv.
    """
    if os.environ.get(SAMPLES_MIRROR_ENV):
        return Path(os.environ[SAMPLES_MIRROR_ENV])
    candidates = [_NEIGHBOUR / "imagenet-samples"]
    if os.environ.get(MIRROR_ENV):
        candidates.insert(0, Path(os.environ[MIRROR_ENV]).parent / "imagenet-samples")
    return next((c for c in candidates if (c / "truth.csv").is_file()), None)


def fetch(names: Iterable[str], dest_dir: Path = HERE, mirror: Optional[Path] = None, quiet: bool = False) -> list:
    if mirror is None:
        mirror = default_mirror(MIRROR_ENV, "models")
    return [fetch_one(n, dest_dir, mirror, quiet) for n in names]


def fetch_images(dest_dir: Path = SAMPLES, mirror: Optional[Path] = None, quiet: bool = False) -> list:
    """The sample photos; returns their paths."""
    if mirror is None:
        mirror = default_mirror(IMAGES_MIRROR_ENV, "images")
    return [fetch_one(n, dest_dir, mirror, quiet) for n in IMAGES]


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"files to fetch (default: {' '.join(DEFAULT)})")
    ap.add_argument("--all", action="store_true", help="every pinned model and the labels")
    ap.add_argument("--images", action="store_true", help="also fetch the sample photos into models/samples/")
    ap.add_argument("--tutorial", action="store_true", help="also fetch the tutorial's mobilenet_v1_1.0_224_quant zip")
    ap.add_argument("--tutorial-sha256", help="expected sha256 of the tutorial zip")
    ap.add_argument("--mirror", type=Path, help=f"local folder to copy from first (default: ${MIRROR_ENV})")
    ap.add_argument("--dest", type=Path, default=HERE, help="where to place the files (default: this folder)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    names = list(PINNED) if args.all else (args.names or DEFAULT)
    unknown = [n for n in names if n not in PINNED]
    if unknown:
        ap.error(f"unknown file(s) {unknown}; known: {sorted(PINNED)}")
    try:
        fetch(names, args.dest, args.mirror, args.quiet)
        if args.images:
            fetch_images(quiet=args.quiet)
        if args.tutorial:
            fetch_tutorial(args.dest, args.tutorial_sha256)
    except (FetchError, OSError, zipfile.BadZipFile) as exc:
        print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
