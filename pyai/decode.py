"""Second stage: encoded bytes -> RGB uint8 frame, no larger than the model needs.

The header is walked and checked against the limits first (:mod:`pyai.header`),
then the frame goes to the fastest decoder for it: a JPEG to libjpeg-turbo at
the smallest DCT scale that covers the need, on several cores when a splitter is
given (:mod:`pyai.decode_jpeg`); every other format to Pillow, reduced on load
(:mod:`pyai.decode_pillow`).
"""

from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

from .decode_jpeg import decode_jpeg, jpeg_scaled_size, jpeg_splitter
from .decode_pillow import decode_pillow
from .header import COST, Header, Limits, check, inspect, sniff

# The stage's whole surface, so that its callers import one module: decode() and
# what they hand it or ask about it (limits, the header, the splitter, the scale).
__all__ = ["COST", "Header", "Limits", "check", "decode", "inspect", "jpeg_scaled_size", "jpeg_splitter", "sniff"]


def decode(
    data: bytes | memoryview,
    min_size: Tuple[int, int] | Callable[[int, int], Tuple[int, int]],
    limits: Limits = Limits(),
    reuse: bool = False,
    splitter=None,
    header: Header | None = None,
) -> np.ndarray:
    """Decode ``data`` to a C-contiguous (H, W, 3) uint8 RGB array.

    ``min_size`` is (width, height): the decoder may return a smaller-than-full
    image as long as both sides stay at least this large (or the full image if it
    is smaller). It may also be a function of the image's (width, height) from its
    header, for a minimum that depends on the frame (a crop's region must cover the
    model's input, not the whole frame). With ``reuse``, a JPEG is decoded into this
    thread's scratch buffer: the frame is valid only until the thread's next ``reuse``
    decode.
    ``splitter`` (from :func:`jpeg_splitter`) decodes a JPEG on several cores, with
    the same pixels. ``header`` is ``inspect(data)`` when the caller has it already
    (checked against ``limits`` here all the same). Raises BadInput with a one-line
    reason.
    """
    if header is None:
        header = inspect(data)
    check(header, limits)
    if callable(min_size):
        min_size = min_size(header.width, header.height)
    if header.kind == "jpeg":
        frame = decode_jpeg(data, min_size, header.width, header.height, reuse, splitter)
        if frame is not None:
            return frame
    return decode_pillow(data, header, min_size, limits)
