"""Fuzz target: any bytes -> the whole decode-and-label path of pyai (atheris/libFuzzer).

    python tests/fuzz/fuzz_label.py -max_total_time=120 -artifact_prefix=/tmp/pyai-fuzz/ /tmp/pyai-fuzz/corpus

What an input means and what counts as a finding: tests/fuzz/target.py. Seeds
(written into the first corpus folder when it is empty) are small images of
every format and mode, the oversized-header images, the sample photos shrunk
and re-encoded, and the kept regressions. Keep a finding in
tests/fuzz/regressions/ (test_fuzz_regressions.py replays every file there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

with atheris.instrument_imports(include=["pyai", "PIL", "tests.fuzz.target"]):
    # Pillow imports its format plugins lazily: import them here to instrument them.
    from PIL import (BmpImagePlugin, GifImagePlugin, Image, ImageFile, ImagePalette,  # noqa: F401
                     JpegImagePlugin, PngImagePlugin, WebPImagePlugin)

    import pyai.decode  # noqa: F401
    import pyai.source  # noqa: F401
    from tests.fuzz import target

from tests.fuzz import crafted  # noqa: E402

_clf = None


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    target.run_one(_clf, data)


def small_photos() -> list:
    """The sample photos, shrunk and re-encoded so they fit -max_len."""
    folder = REPO / "models" / "samples"
    out = []
    for p in sorted(folder.glob("*")) if folder.exists() else []:
        im = Image.open(p).convert("RGB")
        im.thumbnail((160, 160))
        fmt = {".jpg": "JPEG", ".bmp": "BMP"}.get(p.suffix, "PNG")
        out.append(crafted.encode(im, fmt))
    return out


def write_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return 0
    n = 0
    for i, s in enumerate(crafted.seeds() + small_photos()):
        if len(s) <= 60_000:
            # Every seed in two deliveries: raw bytes (repaired) and base64 text.
            (folder / f"seed-{i:03d}-raw").write_bytes(b"\x04" + s)
            (folder / f"seed-{i:03d}-b64").write_bytes(b"\x01" + s)
            n += 2
    for p in sorted(crafted.REGRESSIONS.iterdir()):
        if p.is_file() and p.suffix != ".md":
            (folder / f"regression-{p.name}").write_bytes(p.read_bytes())
            n += 1
    return n


def main(argv: list) -> None:
    global _clf
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if corpus:
        print(f"pyai fuzz: {write_seeds(Path(corpus[0]))} seeds written to {corpus[0]}", flush=True)
    if not any(a.startswith("-max_len") for a in argv):
        argv = argv + ["-max_len=65536"]
    if not any(a.startswith("-timeout") for a in argv):
        argv = argv + ["-timeout=20"]
    _clf = target.make_classifier()
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
