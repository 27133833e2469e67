"""Run under the emulated aarch64 python: the C resize agrees with the NumPy one.

Prints one line per case and exits non-zero on any disagreement. Random frames of
awkward sizes, every output dtype, so NEON-vectorised loops see their tails.
"""

import platform
import sys

import numpy as np

import native_preproc
from pyai.resize import resize_into_numpy

SIZES = [((1, 1), (224, 224)), ((360, 640), (224, 224)), ((97, 333), (128, 128)),
         ((5, 3000), (9, 7)), ((225, 338), (224, 224)), ((224, 224), (224, 224))]


def main() -> int:
    rng = np.random.default_rng(1)
    bad = 0
    print("machine:", platform.machine())
    for (h, w), (oh, ow) in SIZES:
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for dtype, tol in ((np.uint8, 1), (np.int8, 1), (np.float32, 1 / 127.5 + 1e-6)):
            a = np.empty((oh, ow, 3), dtype)
            b = np.empty((oh, ow, 3), dtype)
            native_preproc.resize_into(src, a)
            resize_into_numpy(src, b)
            diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            ok = diff <= tol
            bad += not ok
            print(f"{w}x{h} -> {ow}x{oh} {np.dtype(dtype).name}: max diff {diff:.6f} {'ok' if ok else 'FAIL'}")
    return 1 if bad or platform.machine() != "aarch64" else 0


if __name__ == "__main__":
    sys.exit(main())
