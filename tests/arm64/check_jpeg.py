"""Run under the emulated aarch64 python: native_jpeg's split decode equals simplejpeg.

Every sample JPEG (at the pipeline's scale and at full size) and a 4:4:4 and a
progressive re-encoding of the 720p frame, with 1 to 3 threads. Prints one line per
case and exits non-zero on any difference.
"""

import io
import platform
import sys
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

import native_jpeg

SAMPLES = Path(__file__).resolve().parents[2] / "models" / "samples"


def cases():
    for p in sorted(SAMPLES.glob("*.jpg")):
        yield p.name, p.read_bytes()
    im = Image.open(SAMPLES / "cat_720p.jpg")
    for name, kw in (("cat_720p 4:4:4", {"subsampling": 0}), ("cat_720p progressive", {"progressive": True})):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90, **kw)
        yield name, buf.getvalue()


def main() -> int:
    print("machine:", platform.machine())
    decoders = {n: native_jpeg.JpegDecoder(n) for n in (1, 2, 3)}
    bad = 0
    for name, data in cases():
        for min_side in (247, 0):
            ref = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=min_side, min_height=min_side)
            for n, dec in decoders.items():
                out = np.empty_like(ref)
                dec.decode_into(data, out)
                ok = np.array_equal(out, ref)
                bad += not ok
                print(f"{name} {ref.shape[1]}x{ref.shape[0]} threads={n}: {'ok' if ok else 'FAIL'}")
    split = decoders[2].stats()["split_calls"]
    print("split decodes with 2 threads:", split)
    return 1 if bad or not split or platform.machine() != "aarch64" else 0


if __name__ == "__main__":
    sys.exit(main())
