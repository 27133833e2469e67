"""Seeds for the walker's fuzz target (tests/fuzz/dcsig_fuzz.c): small camera-like
frames in every JPEG layout a camera sends (4:2:0, 4:2:2, 4:4:4, grey, restart
markers, optimised tables) and a few it should not (progressive), each prefixed
with the option byte the target reads first.

    python -m tests.fuzz.dcsig_seeds OUT_DIR [--photos DIR]

Without ``--photos`` the frames are synthetic scenes drawn here (what the committed
corpus, tests/fuzz/dcsig_corpus/, grew from); with it, the photos in DIR are
shrunk and re-encoded as well (real camera frames: the long run's seeds, never
committed). The target lets frames this small take the two-core split.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path
from typing import Iterator, List

import numpy as np
from PIL import Image, ImageDraw

# (subsampling, restart interval in MCUs or 0, optimize, progressive, grey)
LAYOUTS = [(2, 0, False, False, False), (1, 0, False, False, False), (0, 0, True, False, False),
           (2, 4, False, False, False), (0, 0, False, False, True), (2, 0, False, True, False)]
SIZES = [(48, 32), (64, 48), (96, 64)]


def synthetic(width: int, height: int, seed: int) -> Image.Image:
    """A fixed-camera-like scene: a sky gradient, ground, a few objects, sensor noise."""
    rng = random.Random(seed)
    im = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(im)
    horizon = height * rng.randint(30, 60) // 100
    for y in range(height):
        if y < horizon:
            c = (90 + y * 100 // max(1, horizon), 140 + y * 60 // max(1, horizon), 220)
        else:
            c = (70 + rng.randint(0, 20), 90, 60)
        d.line([(0, y), (width, y)], fill=c)
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randint(4, width // 2), y0 + rng.randint(4, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=colour)
    a = np.asarray(im, np.float32) + np.random.default_rng(seed).normal(0, 3.0, (height, width, 3))
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def encode(im: Image.Image, layout: tuple, quality: int) -> bytes:
    sub, rst, opt, prog, grey = layout
    buf = io.BytesIO()
    kw = dict(quality=quality, optimize=opt, progressive=prog)
    if rst:
        kw["restart_marker_blocks"] = rst
    if grey:
        im.convert("L").save(buf, "JPEG", **kw)
    else:
        im.save(buf, "JPEG", subsampling=sub, **kw)
    return buf.getvalue()


def frames(photos: Path | None) -> Iterator[bytes]:
    sources: List[Image.Image] = [synthetic(w, h, i) for i, (w, h) in enumerate(SIZES)]
    if photos is not None:
        for p in sorted(photos.glob("*")):
            if p.suffix.lower() in (".jpg", ".bmp", ".png"):
                im = Image.open(p).convert("RGB")
                im.thumbnail((64, 64))
                sources.append(im)
    for i, im in enumerate(sources):
        for k, layout in enumerate(LAYOUTS):
            yield encode(im, layout, (50, 75, 90)[(i + k) % 3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--photos", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, data in enumerate(frames(args.photos)):
        # Option bytes: one core and two, with and without the stop function.
        for opt in (0x00, 0x01, 0x03, 0x0E):
            (args.out / f"seed-{i:03d}-{opt:02x}").write_bytes(bytes([opt]) + data)
            n += 1
    print(f"{n} seeds in {args.out}")


if __name__ == "__main__":
    main()
