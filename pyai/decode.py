"""Second stage: encoded bytes -> RGB uint8 frame, no larger than the model needs.

JPEG goes through simplejpeg (libjpeg-turbo, SIMD) and asks libjpeg for the
smallest DCT scale (1/8..1) whose output is still at least the model's input
size: a 1080p frame decodes straight to 480x270, which is most of the speed-up.
Every other format (and any JPEG libjpeg-turbo refuses) goes through Pillow,
reduced by an integer box factor on load where it is much larger than needed.
Size limits are checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadInput

try:
    import simplejpeg
except ImportError:  # pragma: no cover - exercised on boxes without the wheel
    simplejpeg = None

log = logging.getLogger(__name__)

# Pillow's own bomb check would raise a warning or its own error; we do the
# check ourselves from the header with the configured limit.
Image.MAX_IMAGE_PIXELS = None

JPEG_MAGIC = b"\xff\xd8\xff"
_PIL_FORMATS = ["PNG", "BMP", "WEBP", "GIF", "JPEG", "TIFF", "PPM"]


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 50_000_000


def sniff(data: bytes | memoryview) -> str:
    head = bytes(data[:12])
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"GIF87a") or head.startswith(b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def decode(data: bytes | memoryview, min_size: Tuple[int, int], limits: Limits = Limits()) -> np.ndarray:
    """Decode ``data`` to a C-contiguous (H, W, 3) uint8 RGB array.

    ``min_size`` is (width, height): the decoder may return a smaller-than-full
    image as long as both sides stay at least this large (or the full image if it
    is smaller). Raises BadInput with a one-line reason.
    """
    kind = sniff(data)
    if kind == "unknown":
        raise BadInput("not an image: unrecognised format (expected JPEG, PNG, BMP, WebP or GIF)")
    if kind == "jpeg" and simplejpeg is not None:
        frame = _decode_jpeg(data, min_size, limits)
        if frame is not None:
            return frame
    return _decode_pillow(data, kind, min_size, limits)


def _check_pixels(width: int, height: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise BadInput(f"not an image: header says {width}x{height}")
    if width * height > limits.max_pixels:
        raise BadInput(
            f"image too large: {width}x{height} = {width * height} pixels > limit {limits.max_pixels}"
        )


def _decode_jpeg(data: bytes | memoryview, min_size: Tuple[int, int], limits: Limits) -> np.ndarray | None:
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise BadInput(f"corrupt JPEG: {_one_line(exc)}") from None
    _check_pixels(width, height, limits)
    if colorspace not in ("YCbCr", "Gray", "CMYK", "RGB"):
        # YCCK and odd Adobe variants: let Pillow handle the colour conversion.
        return None
    min_w, min_h = min_size
    try:
        return simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=min_w, min_height=min_h, strict=True
        )
    except ValueError as exc:
        raise BadInput(f"corrupt JPEG: {_one_line(exc)}") from None


def _decode_pillow(data: bytes | memoryview, kind: str, min_size: Tuple[int, int], limits: Limits) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
            _check_pixels(im.width, im.height, limits)
            if im.format == "JPEG":
                # DCT-domain downscale, the same trick simplejpeg uses.
                im.draft("RGB", min_size)
            im.load()  # first frame only for GIF/animated WebP
            rgb = _to_rgb(im)
            factor = min(rgb.width // max(min_size[0], 1), rgb.height // max(min_size[1], 1))
            if factor >= 2:
                rgb = rgb.reduce(factor)
            arr = np.asarray(rgb, dtype=np.uint8)
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError) as exc:
        raise BadInput(f"corrupt {kind.upper()}: {_one_line(exc)}") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise BadInput(f"not an image: decoded to shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: Pillow's convert("RGB") clips at 255 instead of scaling.
        arr = np.asarray(im, dtype=np.uint32)
        peak = 65535 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        grey = (arr * 255 // peak).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    # Alpha is dropped, as TensorFlow's decode_image(channels=3) does.
    return im.convert("RGB")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
