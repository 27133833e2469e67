"""Every format but JPEG (and JPEG where simplejpeg is missing) -> RGB frame, through Pillow.

The image is reduced by an integer box factor on load where it is much larger
than needed; JPEG uses Pillow's draft mode, the same DCT-domain downscale as
simplejpeg. Pillow's size is checked against the header's before it allocates.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Tuple

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import BadInput, one_line_reason
from .header import FORMAT_NAME, Header, Limits, check_pixels

# Pillow's own bomb check would raise a warning or its own error; we do the
# check ourselves from the header with the configured limit.
Image.MAX_IMAGE_PIXELS = None
# Never paint a partial image from a truncated file (Pillow's default, made
# explicit: another library in the process could have flipped it).
ImageFile.LOAD_TRUNCATED_IMAGES = False

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


def decode_pillow(data: bytes | memoryview, header: Header, min_size: Tuple[int, int], limits: Limits) -> np.ndarray:
    """The first frame as (H, W, 3) uint8 RGB, at least ``min_size`` where the image is;
    raises BadInput with a one-line reason."""
    kind = header.kind
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[kind]])
            # Pillow's idea of the size must agree with ours (it is what it allocates).
            if im.width * im.height > max(header.pixels, 1):
                raise BadInput(f"corrupt {FORMAT_NAME[kind]}: size {im.width}x{im.height} disagrees with the header")
            check_pixels(im.width, im.height, limits)
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, TypeError, KeyError,
            IndexError, struct.error, zlib.error, Image.DecompressionBombError) as exc:
        reason = one_line_reason(exc)
        state = "truncated" if "truncated" in reason.lower() else "corrupt"
        raise BadInput(f"{state} {FORMAT_NAME[kind]}: {reason}") from None
    except MemoryError:
        raise BadInput(f"image too large: out of memory decoding {header.detail} {header.width}x{header.height}") from None
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

