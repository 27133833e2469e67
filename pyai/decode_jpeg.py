"""JPEG bytes -> RGB frame at the smallest DCT scale that still covers the need.

simplejpeg (libjpeg-turbo, SIMD) asks libjpeg for the smallest n/8 scale whose
output is still at least the minimum size: a 1080p frame decodes straight to
480x270, which is most of the speed-up. ``native_jpeg`` (built beside
``native_preproc``) decodes the same pixels with one frame's rows split over
several cores.
"""

from __future__ import annotations

import logging
import threading
from typing import Tuple

import numpy as np

from .errors import BadInput, one_line_reason
from .resize import _env_flag

try:
    import simplejpeg
except ImportError:  # pragma: no cover - exercised on boxes without the wheel
    simplejpeg = None

try:
    # Built beside native_preproc where libjpeg-turbo's headers are installed;
    # PYAI_NO_NATIVE (a box without a compiler) leaves it out like the C resize.
    if _env_flag("PYAI_NO_NATIVE"):
        raise ImportError("PYAI_NO_NATIVE is set")
    import native_jpeg
except ImportError:
    native_jpeg = None

log = logging.getLogger(__name__)


def jpeg_splitter(threads: int):
    """A decoder that splits each JPEG frame's rows over ``threads`` threads (it keeps
    ``threads - 1`` helpers), or None where ``native_jpeg`` is not built or threads < 2."""
    if native_jpeg is None or threads < 2:
        return None
    return native_jpeg.JpegDecoder(min(threads, native_jpeg.MAX_THREADS))


def decode_jpeg(
    data: bytes | memoryview, min_size: Tuple[int, int], width: int, height: int, reuse: bool = False,
    splitter=None,
) -> np.ndarray | None:
    """The (H, W, 3) uint8 RGB frame of a ``width`` x ``height`` JPEG, at least ``min_size``
    where the image is; on ``splitter``'s cores when given, into this thread's scratch
    buffer with ``reuse``. None where neither decoder takes it (no simplejpeg and no
    splitter, or a CMYK frame without simplejpeg): Pillow's turn. Raises BadInput."""
    if splitter is not None:
        frame = _decode_split(splitter, data, min_size, width, height, reuse)
        if frame is not None:
            return frame
    if simplejpeg is None:
        return None
    return _decode_simplejpeg(data, min_size, width, height, reuse)


_scratch = threading.local()


def _scratch_buffer(nbytes: int) -> np.ndarray:
    # A frame-sized allocation per call is an mmap + page faults (~0.1 ms for a
    # 640x360 frame); one buffer per thread, grown on demand, avoids both.
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _scratch.buf = np.empty(nbytes, np.uint8)
    return buf


def _decode_simplejpeg(
    data: bytes | memoryview, min_size: Tuple[int, int], width: int, height: int, reuse: bool = False
) -> np.ndarray:
    # libjpeg picks the smallest n/8 scale whose output covers min_size. Power-
    # of-two scales alone would be faster at some sizes (SIMD IDCT) but jump
    # further: kite_and_cold.jpg at 1/2 instead of 3/8 lands 0.109 from the
    # full-resolution reference, past the 0.1 the accuracy target allows.
    min_w, min_h = min_size
    buffer = None
    if reuse:
        out_w, out_h = jpeg_scaled_size(width, height, min_w, min_h)
        buffer = _scratch_buffer(out_w * out_h * 3)
    try:
        # strict: libjpeg's warnings (corrupt entropy data, premature end) are errors.
        return simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=min_w, min_height=min_h, strict=True, buffer=buffer
        )
    except ValueError as exc:
        if buffer is not None and "buffer is too small" in str(exc):  # pragma: no cover - a simplejpeg that scales otherwise
            log.warning("simplejpeg decodes to another size than jpeg_scaled_size predicts: %s", exc)
            return _decode_simplejpeg(data, min_size, width, height, reuse=False)
        raise BadInput(f"corrupt JPEG: {one_line_reason(exc)}") from None


def _decode_split(
    splitter, data: bytes | memoryview, min_size: Tuple[int, int], width: int, height: int, reuse: bool
) -> np.ndarray | None:
    """The frame, or None for a colour space the splitter leaves to simplejpeg (CMYK)."""
    out_w, out_h = jpeg_scaled_size(width, height, *min_size)
    n = out_w * out_h * 3
    buf = _scratch_buffer(n) if reuse else np.empty(n, np.uint8)
    frame = buf[:n].reshape(out_h, out_w, 3)
    try:
        splitter.decode_into(data, frame)
    except NotImplementedError:
        return None
    except ValueError as exc:
        raise BadInput(f"corrupt JPEG: {one_line_reason(exc)}") from None
    return frame


def jpeg_scaled_size(width: int, height: int, min_w: int, min_h: int) -> Tuple[int, int]:
    """(w, h) that simplejpeg decodes a width x height JPEG to for these minimums.

    libjpeg-turbo scales by n/8 (n = 1..8, sides rounded up); simplejpeg takes the
    smallest n whose output covers the minimums, each capped at the image's own
    side. Computed here, from the header pyai has already read, instead of asking
    simplejpeg.decode_jpeg_header (a second decompressor set up and torn down,
    ~20 us when cold) just to size the scratch buffer.
    """
    need_w, need_h = min(min_w, width), min(min_h, height)
    for n in range(1, 8):
        w, h = -(-width * n // 8), -(-height * n // 8)
        if w >= need_w and h >= need_h:
            return w, h
    return width, height

