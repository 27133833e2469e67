"""Resize RGB uint8 camera frames straight into a model input tensor.

Both implementations reproduce Pillow's ``Image.resize(size, BILINEAR)``:
separable convolution with the triangle filter, its support widened by the
downscale factor (antialiasing), pixel-centre alignment and normalised
weights; the first pass is rounded to integers (Pillow's intermediate image
is 8-bit). The pass order is Pillow 13's: horizontal first, unless the
height shrinks by more than twice as many pixels as the width. Weights are
float32 rather than Pillow's fixed point, so uint8 results differ from
Pillow's by 1 LSB at rare near-ties (with Pillow < 13, which always starts
horizontally, tall downscales differ by 1 LSB more often).

``dst`` is written in place and never reallocated, because it is normally
the NumPy view of a TFLite interpreter's input tensor
(``interpreter.tensor(i)()[0]``).

``box=(x0, y0, x1, y1)`` resizes only that region of the source, in source
pixels (fractions allowed), as Pillow's ``resize(..., box=...)`` does: the
region is an offset and a scale of the filter's windows, so a crop costs no
copy, and windows at the region's edge still read the pixels just outside it
(up to the image's edge), as Pillow's do.

Output mapping by ``dst`` dtype:

* uint8: filtered value rounded half up and clamped to 0..255;
* int8: that uint8 value minus 128;
* float32: ``(filtered value - mean) / std``, the filtered value being the
  second pass's, before the final rounding.

``resize_into`` uses the ``native_preproc`` C extension when it can be
imported and ``PYAI_NO_NATIVE`` was not set (to 1/true/yes/on) when this
module was imported; otherwise it uses ``resize_into_numpy``.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, Final, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "IMPLEMENTATION",
    "MAX_DIM",
    "NATIVE",
    "resize_into",
    "resize_into_numpy",
]

#: Largest accepted height or width, same limit as the C extension.
MAX_DIM: Final[int] = 65536

# Beyond this the NumPy fallback refuses (its dense weight matrices and the
# float intermediate grow with the product of sizes), mirroring the C
# extension's scratch limit.
_MAX_SCRATCH_BYTES: Final[int] = 1 << 30

SrcArray = npt.NDArray[np.uint8]
#: (x0, y0, x1, y1) in source pixels, or None for the whole source.
Box = Optional[Sequence[float]]
DstArray = Union[npt.NDArray[np.uint8], npt.NDArray[np.int8], npt.NDArray[np.float32]]

_OUT_DTYPES: Final[tuple[np.dtype[Any], ...]] = (
    np.dtype(np.uint8),
    np.dtype(np.int8),
    np.dtype(np.float32),
)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------
# Argument checking: same exception types and wording as the C extension,
# so callers see one behaviour whichever path runs.
# --------------------------------------------------------------------------


def _as_array(obj: object, name: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} must support the buffer protocol (e.g. a numpy.ndarray), got {type(obj).__name__}"
        ) from None
    # Shares memory; read-only buffers give read-only arrays.
    return np.asarray(view)


def _as_float(value: object, name: str) -> float:
    # Same acceptance as the C parser's "d": numbers yes, strings no.
    if not (hasattr(type(value), "__float__") or hasattr(type(value), "__index__")):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    return float(value)  # type: ignore[arg-type]


def _check_image(a: np.ndarray, name: str) -> tuple[int, int]:
    if a.ndim != 3:
        raise ValueError(f"{name} must be a 3-D (height, width, 3) array, got {a.ndim}-D")
    rows, cols, channels = a.shape
    if channels != 3:
        raise ValueError(f"{name} must have 3 channels (RGB), got shape {a.shape}")
    if rows < 1 or cols < 1:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if rows > MAX_DIM or cols > MAX_DIM:
        raise ValueError(f"{name} is too large: shape {a.shape}, each side must be at most {MAX_DIM}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return rows, cols


def _check_box(box: Box, H: int, W: int) -> Tuple[float, float, float, float]:
    """The region as four floats; the whole source for None (same checks as the C path)."""
    if box is None:
        return 0.0, 0.0, float(W), float(H)
    try:
        items = tuple(box)
    except TypeError:
        raise TypeError("box must be None or a sequence of 4 numbers (x0, y0, x1, y1)") from None
    if len(items) != 4:
        raise ValueError(f"box must have 4 numbers (x0, y0, x1, y1), got {len(items)}")
    for v in items:
        if isinstance(v, (str, bytes)):
            raise TypeError(f"box must hold real numbers, not {type(v).__name__}")
    x0, y0, x1, y1 = (_as_float(v, "box") for v in items)
    # Written as in C (negated comparisons also refuse NaN).
    if not (all(math.isfinite(v) for v in (x0, y0, x1, y1))
            and 0.0 <= x0 < x1 <= W and 0.0 <= y0 < y1 <= H):
        raise ValueError(
            f"box must satisfy 0 <= x0 < x1 <= {W} and 0 <= y0 < y1 <= {H} "
            f"(the source's width and height), got {(x0, y0, x1, y1)!r}"
        )
    return x0, y0, x1, y1


def _validate(src: object, dst: object, mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
    mean = _as_float(mean, "mean")
    std = _as_float(std, "std")
    if not (math.isfinite(mean) and math.isfinite(std)) or std == 0.0:
        raise ValueError(f"mean and std must be finite and std non-zero, got mean={mean!r}, std={std!r}")
    s = _as_array(src, "src")
    if s.dtype != np.uint8:
        raise TypeError(f"src must be uint8, got {s.dtype}")
    _check_image(s, "src")
    d = _as_array(dst, "dst")
    if not d.flags.writeable:
        raise ValueError("dst must be writable, got a read-only buffer")
    if d.dtype not in _OUT_DTYPES:
        raise TypeError(f"dst must be uint8, int8 or float32, got {d.dtype}")
    _check_image(d, "dst")
    # Address-range overlap, as the C path checks it (exact overlap
    # analysis is not needed for C-contiguous arrays).
    if np.may_share_memory(s, d):
        raise ValueError("src and dst must not share memory")
    return s, d


# --------------------------------------------------------------------------
# NumPy implementation
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _weights(in_size: int, out_size: int, in0: float = 0.0, in1: float | None = None) -> npt.NDArray[np.float32]:
    """Dense (out_size, in_size) resampling matrix of the source interval
    [in0, in1) (default: all of it), read-only and cached.

    Window bounds and weights follow Pillow's ``precompute_coeffs`` in
    float64 (the C extension does the same), so both implementations pick
    identical input pixels and weights.
    """
    if in1 is None:
        in1 = float(in_size)
    scale = (in1 - in0) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the triangle filter's support is 1
    ss = 1.0 / filterscale
    slots = math.ceil(filterscale) * 2 + 1

    center = in0 + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates toward zero; the clamps handle the edges.
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    taps = np.clip(xmax - xmin, 0, slots)

    k = np.arange(slots)
    idx = xmin[:, None] + k[None, :]
    valid = k[None, :] < taps[:, None]
    w = 1.0 - np.abs((idx - center[:, None] + 0.5) * ss)
    w = np.where(valid & (w > 0.0), w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    np.divide(w, total, out=w, where=total != 0.0)

    m = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.broadcast_to(np.arange(out_size)[:, None], idx.shape)
    m[rows[valid], idx[valid]] = w[valid]
    m.setflags(write=False)  # shared through the cache
    return m


def _vertical_first(H: int, W: int, h: int, w: int) -> bool:
    """Pass order of Pillow >= 13: vertical first when the height shrinks by
    more than twice as many pixels as the width (same rule as the C path;
    with a box Pillow still compares the whole image's sizes)."""
    return W != w and H - h > 0 and H - h > 2 * (W - w)


def _used(m: npt.NDArray[np.float32]) -> slice:
    """The source columns of a weight matrix that any window reads."""
    cols = np.flatnonzero(m.any(axis=0))
    return slice(int(cols[0]), int(cols[-1]) + 1) if cols.size else slice(0, 0)


def resize_into_numpy(
    src: SrcArray, dst: DstArray, *, mean: float = 127.5, std: float = 127.5, box: Box = None
) -> None:
    """Pure NumPy twin of ``native_preproc.resize_into``; see module docs.

    Agrees with the C path within 1 LSB for uint8/int8 ``dst`` and within
    ``1/std`` for float32 ``dst`` (only float summation order differs).
    """
    s, d = _validate(src, dst, mean, std)
    H, W = s.shape[:2]
    h, w = d.shape[:2]
    x0, y0, x1, y1 = _check_box(box, H, W)
    vfirst = _vertical_first(H, W, h, w)
    # Pillow's need_vertical: the vertical pass is an identity (and the
    # horizontal pass then the only rounding one) only for the full height
    # at the same size.
    round_h = h != H or y0 != 0.0 or y1 != H
    # float32 elements: weights, the float source, the intermediate, the result
    scratch = 4 * (h * H + w * W + 3 * H * W + (6 * h * W if vfirst else 3 * H * w) + 3 * h * w)
    if scratch > _MAX_SCRATCH_BYTES:
        raise ValueError(
            f"resizing ({H}, {W}) to ({h}, {w}) would need {scratch >> 20} MiB of "
            f"scratch memory (limit {_MAX_SCRATCH_BYTES >> 20} MiB)"
        )
    mx = _weights(W, w, x0, x1)  # (w, W)
    my = _weights(H, h, y0, y1)  # (h, H)
    # Only the rows and columns some window reads: a crop's margins cost nothing.
    cols, rows = _used(mx), _used(my)
    mx, my = mx[:, cols], my[:, rows]
    s = s[rows, cols]
    H, W = s.shape[:2]

    # Channel-planar rows turn the horizontal pass into one 2-D matrix
    # product; `out` ends up (h, 3*w) with columns ordered (c, x).
    if vfirst:
        vert = my @ s.reshape(H, W * 3).astype(np.float32)  # (h, W*3); the slice is copied here
        # Round half up and clamp, as Pillow's 8-bit intermediate image.
        np.add(vert, np.float32(0.5), out=vert)
        np.floor(vert, out=vert)
        np.minimum(vert, np.float32(255.0), out=vert)
        planar = np.ascontiguousarray(vert.reshape(h, W, 3).transpose(0, 2, 1))
        out = (planar.reshape(h * 3, W) @ mx.T).reshape(h, 3 * w)
    else:
        planar = np.ascontiguousarray(s.transpose(0, 2, 1), dtype=np.float32)
        horiz = planar.reshape(H * 3, W) @ mx.T  # (H*3, w): rows are (y, c)
        if round_h:
            # Pillow's horizontal pass writes an 8-bit image: round half up
            # (values are >= 0, so floor(v + 0.5) does). No clamp, like the C
            # path: only float error over huge windows could exceed 255. With
            # the height unchanged the vertical pass is exact and Pillow
            # rounds only once.
            np.add(horiz, np.float32(0.5), out=horiz)
            np.floor(horiz, out=horiz)
        out = my @ horiz.reshape(H, 3 * w)

    if d.dtype == np.float32:
        np.subtract(out, np.float32(mean), out=out)
        np.divide(out, np.float32(std), out=out)
    else:
        # Values are >= 0, so floor(v + 0.5) is the C path's round half up.
        np.add(out, np.float32(0.5), out=out)
        np.floor(out, out=out)
        np.clip(out, 0.0, 255.0, out=out)
        if d.dtype == np.int8:
            np.subtract(out, np.float32(128.0), out=out)
    np.copyto(d, out.reshape(h, 3, w).transpose(0, 2, 1), casting="unsafe")


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------

_native: Callable[..., None] | None = None
if not _env_flag("PYAI_NO_NATIVE"):
    try:
        # Importing the function rather than the module matters: without
        # the extension installed, running from the repo root would import
        # the native_preproc/ source folder as an empty namespace package.
        from native_preproc import resize_into as _native
    except ImportError:
        _native = None

#: True when ``resize_into`` runs the C extension.
NATIVE: Final[bool] = _native is not None
#: "native" or "numpy".
IMPLEMENTATION: Final[str] = "native" if NATIVE else "numpy"


def resize_into(
    src: SrcArray, dst: DstArray, *, mean: float = 127.5, std: float = 127.5, box: Box = None
) -> None:
    """Resize ``src`` (H, W, 3) uint8 RGB, or its region ``box`` = (x0, y0, x1, y1)
    in source pixels, into ``dst`` (h, w, 3) in place.

    ``dst`` dtype is uint8, int8 or float32; ``mean``/``std`` only apply to
    float32. Raises TypeError/ValueError on bad arguments. Uses the C
    extension when available (see ``IMPLEMENTATION``).
    """
    if _native is not None:
        _native(src, dst, mean=mean, std=std, box=box)
    else:
        resize_into_numpy(src, dst, mean=mean, std=std, box=box)
