"""A row of the model's output -> confidences: what ``confidence`` means for each kind of output.

- ``probability`` (a softmax or logistic output, or a quantized output whose range
  is [0, 1]): the dequantized score, as before; the top k are picked on the raw
  values, so only k values are converted.
- ``logits`` (any other output): the softmax of the whole row, so a confidence is
  still a probability over the model's classes and ``minConfidence`` keeps its
  meaning; the order is the logits' order.
- ``calibrated`` (metadata ScoreCalibrationOptions): the Task Library's sigmoid
  calibration of each class's score, ``scale / (1 + exp(-(slope * g(x) + offset)))``,
  ``default_score`` at or below ``min_score`` or for a class without parameters.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .labels import Result, top_k
from .metadata import Calibration

KINDS = ("probability", "logits", "calibrated")


class Scores:
    """Turns one raw output row into the best-first result list."""

    def __init__(self, kind: str, scale: float, zero_point: int, calibration: Optional[Calibration] = None):
        if kind not in KINDS:
            raise ValueError(f"unknown score kind {kind!r}")
        self.kind = kind
        self.scale = scale
        self.zero_point = zero_point
        self._cal = _calibration_arrays(calibration) if calibration is not None else None
        self.calibration = calibration

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        return (raw.astype(np.float64) - self.zero_point) * self.scale

    def confidences(self, raw: np.ndarray) -> np.ndarray:
        """The whole row as confidences (float64)."""
        x = self.dequantize(raw)
        if self.kind == "logits":
            e = np.exp(x - x.max())
            return e / e.sum()
        if self.kind == "calibrated":
            return self._calibrate(x)
        return x

    def top_k(self, raw: np.ndarray, labels: Sequence[str], k: int, min_confidence: float) -> Result:
        if self.kind == "probability":
            return top_k(raw, labels, k, self.scale, self.zero_point, min_confidence)
        return top_k(self.confidences(raw), labels, k, 1.0, 0, min_confidence)

    def _calibrate(self, x: np.ndarray) -> np.ndarray:
        assert self._cal is not None and self.calibration is not None
        scale, slope, offset, min_score, has = self._cal
        n = min(len(x), len(scale))
        out = np.full(len(x), self.calibration.default_score, dtype=np.float64)
        xs = x[:n]
        transform = self.calibration.transform
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if transform == "log":
                g = np.log(xs)
            elif transform == "inverse_logistic":
                g = np.log(xs) - np.log1p(-xs)
            else:
                g = xs
            cal = scale[:n] / (1.0 + np.exp(-(slope[:n] * g + offset[:n])))
        use = has[:n] & (xs > min_score[:n]) & np.isfinite(cal)
        out[:n][use] = cal[use]
        return out


def _calibration_arrays(cal: Calibration):
    n = len(cal.params)
    scale, slope, offset = np.zeros(n), np.zeros(n), np.zeros(n)
    min_score = np.full(n, -np.inf)
    has = np.zeros(n, dtype=bool)
    for i, p in enumerate(cal.params):
        if p is None:
            continue
        scale[i], slope[i], offset[i] = p[0], p[1], p[2]
        if p[3] is not None:
            min_score[i] = p[3]
        has[i] = True
    return scale, slope, offset, min_score, has
