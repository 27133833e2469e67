"""Which region of a frame the model sees (MediaPipe's "region of interest").

A region is a box in the decoded frame's pixels that the resize reads
instead of the whole frame (``resize_into(..., box=...)``: an offset and a
scale of the filter's windows, no copy). The modes:

* ``stretch``: the centre ``fraction`` of each side of the frame, stretched
  to the model's input. At fraction 1 this is the whole frame, squashed to
  the input's aspect (a 16:9 frame loses 44% of its width to the squash),
  which is what pyai did before crops existed.
* ``aspect``: the largest centred region with the input's aspect ratio
  (for a 224x224 model, the centre square: a 16:9 frame's middle 56%),
  times ``fraction`` of each side. This is the "resize the short side, then
  centre crop" of ResNet/VGG evaluations: no squash, but the frame's sides
  are not seen.
* ``letterbox``: the centre ``fraction`` of each side of the frame, scaled to
  fit the input without changing its aspect, the rest of the input padded
  with mid-grey (MediaPipe's ``keep_aspect_ratio``, YOLO's letterbox): every
  pixel is seen, nothing is squashed, but a 16:9 frame fills only 56% of a
  square input's rows.
* ``squares``: ``squares`` regions with the input's aspect (the centre
  square's size, times ``fraction`` of each side), spread evenly from one end
  of the frame's long side to the other and run as one batch; their scores
  are merged (pyai/merge.py). Two squares of a 16:9 frame overlap by 22% of
  its width, three by 61%; together they cover the whole frame, unsquashed.
  One square is the centre square; with ``whole`` the centre ``fraction`` of
  the whole frame, stretched as in ``stretch``, is one more view: the centre
  square sharp and unsquashed, the sides still seen.

Because the region is a fraction of the frame, it is the same region of the
source whatever DCT scale the JPEG decoder picks; :meth:`Crop.decode_size`
asks the decoder for a frame whose *region* covers ``decode_oversample``
times the model input, so the final resize is still a real downscale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

#: The modes of :class:`Crop`.
MODES = ("stretch", "aspect", "letterbox", "squares")
#: Most squares one frame may be split into (each is one inference).
MAX_SQUARES = 4

Box = Tuple[float, float, float, float]
#: Where a letterboxed region lands in the input: (x0, y0, width, height) in its pixels.
Placement = Tuple[int, int, int, int]


@dataclass(frozen=True)
class Crop:
    """A centred region of every frame: ``mode`` (see module docs) and the
    ``fraction`` (0 < fraction <= 1) of each side of that mode's region."""

    mode: str = "stretch"
    fraction: float = 1.0
    #: How many squares a frame is split into (``squares`` mode only).
    squares: int = 1
    #: ``squares`` mode: the whole frame (its centre ``fraction``), stretched, is one more view.
    whole: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"crop mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (0.0 < self.fraction <= 1.0):  # also refuses NaN
            raise ValueError(f"crop fraction must be in (0, 1], got {self.fraction!r}")
        if not 1 <= self.squares <= MAX_SQUARES:
            raise ValueError(f"crop squares must be between 1 and {MAX_SQUARES}, got {self.squares!r}")

    @property
    def whole_frame(self) -> bool:
        """True when the region is the whole frame (for any frame)."""
        return self.mode == "stretch" and self.fraction == 1.0

    @property
    def most_views(self) -> int:
        """The most views (inferences) one frame is run as."""
        return self.squares + int(self.whole) if self.mode == "squares" else 1

    def side_fractions(self, width: int, height: int, input_size: Tuple[int, int]) -> Tuple[float, float]:
        """The fractions of a ``width`` x ``height`` frame's width and height the region spans."""
        fw = fh = self.fraction
        if self.mode in ("aspect", "squares"):
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
        if self.whole_frame or (self.mode == "letterbox" and self.fraction == 1.0):
            return None
        if self.mode == "squares":  # the box around every view
            views = self.views(width, height, input_size)
            x0, y0 = min(v[0] for v in views), min(v[1] for v in views)  # type: ignore[index]
            x1, y1 = max(v[2] for v in views), max(v[3] for v in views)  # type: ignore[index]
            return None if (x0, y0, x1, y1) == (0.0, 0.0, width, height) else (x0, y0, x1, y1)
        fw, fh = self.side_fractions(width, height, input_size)
        return _centred(width, height, width / 2.0, height / 2.0, width * fw, height * fh)

    def views(self, width: int, height: int, input_size: Tuple[int, int]) -> List[Optional[Box]]:
        """The region of each input the frame is run as: one (``box``) except in
        ``squares`` mode, where it is ``squares`` boxes along the long side, first to
        last (one when the frame already has the input's aspect), then with ``whole``
        the stretched frame's."""
        if self.mode != "squares":
            return [self.box(width, height, input_size)]
        out = self._squares(width, height, input_size)
        if self.whole:
            out.append(_centred(width, height, width / 2.0, height / 2.0, width * self.fraction,
                                height * self.fraction))
        return out

    def _squares(self, width: int, height: int, input_size: Tuple[int, int]) -> List[Optional[Box]]:
        afw, afh = Crop("aspect").side_fractions(width, height, input_size)
        aw, ah = width * afw, height * afh  # the centre square (input-aspect region) at fraction 1
        spare_w, spare_h = width - aw, height - ah
        n = self.squares if max(spare_w, spare_h) >= 1.0 else 1
        out: List[Optional[Box]] = []
        for i in range(n):
            t = i / (n - 1) if n > 1 else 0.5
            cx, cy = aw / 2.0 + t * spare_w, ah / 2.0 + t * spare_h
            out.append(_centred(width, height, cx, cy, aw * self.fraction, ah * self.fraction))
        return out

    def placement(self, width: int, height: int, input_size: Tuple[int, int]) -> Optional[Placement]:
        """Where a ``letterbox`` region of a ``width`` x ``height`` frame lands in the
        input, (x0, y0, width, height) in the input's pixels; None when it fills the
        input (and in the other modes, which always fill it)."""
        if self.mode != "letterbox":
            return None
        in_w, in_h = input_size
        rw, rh = width * self.fraction, height * self.fraction
        scale = min(in_w / rw, in_h / rh)
        pw, ph = min(in_w, max(1, round(rw * scale))), min(in_h, max(1, round(rh * scale)))
        if (pw, ph) == (in_w, in_h):
            return None
        return (in_w - pw) // 2, (in_h - ph) // 2, pw, ph

    def decode_size(
        self, width: int, height: int, input_size: Tuple[int, int], oversample: float
    ) -> Tuple[int, int]:
        """(width, height) a decoded ``width`` x ``height`` source must at least have
        so that its region covers ``oversample`` times ``input_size``."""
        fw, fh = self.side_fractions(width, height, input_size)
        if self.whole and self.mode == "squares":  # the squares need more than the stretched frame
            fw, fh = min(fw, self.fraction), min(fh, self.fraction)
        place = self.placement(width, height, input_size)
        in_w, in_h = input_size if place is None else place[2:]
        # A hair below the exact quotient absorbs float error in the fractions
        # (0.875 * 8/7 is not exactly 1), so an exact fit is not rounded up a step.
        return (math.ceil(in_w * oversample / fw - 1e-9), math.ceil(in_h * oversample / fh - 1e-9))


def _centred(width: int, height: int, cx: float, cy: float, rw: float, rh: float) -> Box:
    """The ``rw`` x ``rh`` box centred on (cx, cy), kept inside the frame."""
    x0, y0 = cx - rw / 2.0, cy - rh / 2.0
    # Rounding may push an edge a hair past the frame; the resize refuses that.
    return max(0.0, x0), max(0.0, y0), min(float(width), x0 + rw), min(float(height), y0 + rh)
