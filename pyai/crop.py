"""Which region of a frame the model sees (MediaPipe's "region of interest").

A region is a box in the decoded frame's pixels that the resize reads
instead of the whole frame (``resize_into(..., box=...)``: an offset and a
scale of the filter's windows, no copy). Two modes:

* ``stretch``: the centre ``fraction`` of each side of the frame, stretched
  to the model's input. At fraction 1 this is the whole frame, squashed to
  the input's aspect (a 16:9 frame loses 44% of its width to the squash),
  which is what pyai did before crops existed.
* ``aspect``: the largest centred region with the input's aspect ratio
  (for a 224x224 model, the centre square: a 16:9 frame's middle 56%),
  times ``fraction`` of each side. This is the "resize the short side, then
  centre crop" of ResNet/VGG evaluations: no squash, but the frame's sides
  are not seen.

Because the region is a fraction of the frame, it is the same region of the
source whatever DCT scale the JPEG decoder picks; :meth:`Crop.decode_size`
asks the decoder for a frame whose *region* covers ``decode_oversample``
times the model input, so the final resize is still a real downscale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

#: The modes of :class:`Crop`.
MODES = ("stretch", "aspect")

Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class Crop:
    """A centred region of every frame: ``mode`` (see module docs) and the
    ``fraction`` (0 < fraction <= 1) of each side of that mode's region."""

    mode: str = "stretch"
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"crop mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (0.0 < self.fraction <= 1.0):  # also refuses NaN
            raise ValueError(f"crop fraction must be in (0, 1], got {self.fraction!r}")

    @property
    def whole_frame(self) -> bool:
        """True when the region is the whole frame (for any frame)."""
        return self.mode == "stretch" and self.fraction == 1.0

    def side_fractions(self, width: int, height: int, input_size: Tuple[int, int]) -> Tuple[float, float]:
        """The fractions of a ``width`` x ``height`` frame's width and height the region spans."""
        fw = fh = self.fraction
        if self.mode == "aspect":
            in_w, in_h = input_size
            # Frame wider than the input: the region keeps the full height.
            if width * in_h > height * in_w:
                fw *= (height * in_w) / (in_h * width)
            else:
                fh *= (width * in_h) / (in_w * height)
        return fw, fh

    def box(self, width: int, height: int, input_size: Tuple[int, int]) -> Optional[Box]:
        """The region of a ``width`` x ``height`` frame as (x0, y0, x1, y1) in its
        pixels, or None for the whole frame (the resize's fast default)."""
        if self.whole_frame:
            return None
        fw, fh = self.side_fractions(width, height, input_size)
        rw, rh = width * fw, height * fh
        x0, y0 = (width - rw) / 2.0, (height - rh) / 2.0
        # Rounding may push an edge a hair past the frame; the resize refuses that.
        return max(0.0, x0), max(0.0, y0), min(float(width), x0 + rw), min(float(height), y0 + rh)

    def decode_size(
        self, width: int, height: int, input_size: Tuple[int, int], oversample: float
    ) -> Tuple[int, int]:
        """(width, height) a decoded ``width`` x ``height`` source must at least have
        so that its region covers ``oversample`` times ``input_size``."""
        fw, fh = self.side_fractions(width, height, input_size)
        in_w, in_h = input_size
        # A hair below the exact quotient absorbs float error in the fractions
        # (0.875 * 8/7 is not exactly 1), so an exact fit is not rounded up a step.
        return (math.ceil(in_w * oversample / fw - 1e-9), math.ceil(in_h * oversample / fh - 1e-9))
