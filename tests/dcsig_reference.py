"""The walker's reference: cell means from libjpeg's own 1/8-scale decode (Pillow's
``draft``), for tests/test_dcsig.py and, under emulated aarch64 where pytest is not
installed, tests/arm64/check_dcsig.py; and whether the plugin's decoders accept a
frame (tests/test_dcsig.py, tests/fuzz/test_dcsig_corpus.py)."""

from __future__ import annotations

import io
from typing import Tuple

import numpy as np
from PIL import Image


def cell_means_from_draft(data: bytes, box: Tuple[int, int, int, int], gy: int, gx: int) -> np.ndarray:
    """The cells ``native_dcsig.cell_means`` gives, from libjpeg's 1/8 decode: each
    pixel one block's DC mean, rounded (chroma IDCT-scaled to 2x2 per block when
    subsampled: their mean is the DC)."""
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    sub = {(1, 1): 1, (2, 2): 2}[(im.layer[0][1], im.layer[0][2])] if im.mode != "L" else 1
    im.draft(im.mode if im.mode == "L" else "YCbCr", (w // 8, h // 8))
    a = np.asarray(im, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]

    def cells(plane: np.ndarray, foot: int) -> np.ndarray:
        x0, y0, x1, y1 = box
        ys = (np.arange(plane.shape[0]) + 0.5) * foot
        xs = (np.arange(plane.shape[1]) + 0.5) * foot
        iy = np.nonzero((ys >= y0) & (ys < y1))[0]
        ix = np.nonzero((xs >= x0) & (xs < x1))[0]
        cy = np.minimum(((ys[iy] - y0) * gy / (y1 - y0)).astype(int), gy - 1)
        cx = np.minimum(((xs[ix] - x0) * gx / (x1 - x0)).astype(int), gx - 1)
        out, n = np.zeros((gy, gx)), np.zeros((gy, gx))
        np.add.at(out, (cy[:, None], cx[None, :]), plane[np.ix_(iy, ix)])
        np.add.at(n, (cy[:, None], cx[None, :]), 1)
        return out / n

    y = cells(a[..., 0], 8)
    if a.shape[2] == 1:
        return np.repeat(y[..., None], 3, axis=2)
    hh, ww = a.shape[0] // sub * sub, a.shape[1] // sub * sub
    chroma = a[:hh, :ww, 1:].reshape(hh // sub, sub, ww // sub, sub, 2).mean(axis=(1, 3))
    cb, cr = cells(chroma[..., 0], 8 * sub) - 128, cells(chroma[..., 1], 8 * sub) - 128
    return np.stack([y + 1.402 * cr, y - 0.34414 * cb - 0.71414 * cr, y + 1.772 * cb], axis=-1)


def plugin_decoders_accept(data: bytes, splitter, size: Tuple[int, int]) -> bool:
    """Whether both of the plugin's JPEG decoders (the split one, ``splitter``, and the
    one-thread one) decode ``data`` towards ``size`` without refusing it."""
    from pyai.decode import Limits, decode
    from pyai.errors import BadInput

    try:
        decode(data, size, Limits(), False, splitter)
        decode(data, size, Limits(), False, None)
    except BadInput:
        return False
    return True
