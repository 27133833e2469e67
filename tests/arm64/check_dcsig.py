"""Run under the emulated aarch64 python: native_dcsig's cell means are libjpeg's block means.

JPEGs re-encoded with Pillow from the sample photos (4:2:0, 4:4:4, grey, restart
markers; an inner box and the whole frame): cell_means on one core and on two must
be equal bit for bit, and within half a grey level (plus libjpeg's rounding) of the
same cells built with NumPy from Pillow's 1/8-scale decode, whose pixels are the
blocks' DC means (the reference of tests/test_dcsig.py). Prints one line per case
and exits non-zero on any difference.
"""

import io
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import native_dcsig

# Run with the repository on PYTHONPATH (tests/test_arm64.py does).
from tests.dcsig_reference import cell_means_from_draft

SAMPLES = Path(__file__).resolve().parents[2] / "models" / "samples"


def jpeg(im: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **save)
    return buf.getvalue()


def cases():
    cat = Image.open(SAMPLES / "cat_720p.jpg").convert("RGB")
    parrot = Image.open(SAMPLES / "parrot.jpg").convert("RGB").resize((1280, 720), Image.BILINEAR)
    inner = (100, 45, 1180, 675)
    yield "cat_720p 4:2:0", jpeg(cat, quality=85, subsampling=2), inner
    yield "cat_720p 4:4:4", jpeg(cat, quality=85, subsampling=0), inner
    yield "cat_720p grey", jpeg(cat.convert("L"), quality=85), inner
    yield "cat_720p restart rows", jpeg(cat, quality=85, subsampling=2, restart_marker_rows=1), inner
    yield "cat_720p restart blocks", jpeg(cat, quality=85, subsampling=2, restart_marker_blocks=7), inner
    yield "cat_720p 4:2:0 whole", jpeg(cat, quality=90, subsampling=2), (0, 0, 1280, 720)
    yield "parrot 4:2:0 restart rows", jpeg(parrot, quality=90, subsampling=2, restart_marker_rows=3), (0, 0, 1280, 720)


def main() -> int:
    print("machine:", platform.machine())
    bad = 0
    split = native_dcsig.stats()["split"]
    for name, data, box in cases():
        one = native_dcsig.cell_means(data, box, threads=1)
        # the helper thread is reused from call to call: more than one pass through it
        twos = [native_dcsig.cell_means(data, box, threads=2) for _ in range(3)]
        same = all(np.array_equal(two, one) for two in twos)
        want = cell_means_from_draft(data, box, one.shape[0], one.shape[1])
        diff = np.abs(one.astype(np.float64) - want)
        # libjpeg rounds each block's mean to a whole grey level (and clamps it).
        ok = same and one.dtype == np.float32 and diff.max() < 0.75 and diff.mean() < 0.2
        bad += not ok
        print(f"{name} {len(data)} B box={box} grid {one.shape[1]}x{one.shape[0]}: vs libjpeg max {diff.max():.3f} "
              f"mean {diff.mean():.3f}, threads=2 {'== threads=1' if same else 'DIFFERS from threads=1'}: "
              f"{'ok' if ok else 'FAIL'}")
    split = native_dcsig.stats()["split"] - split
    print("walks split over two cores:", split)
    return 1 if bad or not split or platform.machine() != "aarch64" else 0


if __name__ == "__main__":
    sys.exit(main())
