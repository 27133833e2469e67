"""How to feed a model and read its answers, settled once at load: config > metadata > graph.

- Labels: the config's ``labels`` file, else the label file the model's TFLite
  metadata names (packed in the model file; ``label_locale`` picks a display-name
  file). Either way the count must be the output's class count.
- Normalisation: the config's ``mean``/``std``, else the metadata's. A float input
  without either is refused (it would run on raw 0..255 pixels and answer nonsense).
  A quantized input takes pixels as they are when its quantization already encodes
  the normalisation (within one step, the usual case), else through the exact map
  ``q = (p - mean) / std / scale + zero_point``.
- Scores: see pyai/scores.py for what ``confidence`` is for each kind.

Every refusal is a one-line ModelError raised at start.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .config import Config
from .errors import ModelError
from .labels import load_labels, parse_labels
from .metadata import ModelFile, read
from .model import Model
from .resize import Box, resize_into
from .scores import Scores

log = logging.getLogger(__name__)

# A quantized output whose dequantized range lies in [0, 1] within this is a probability.
_PROB_SLACK = 0.02


@dataclass
class Normalisation:
    """Pixel -> input tensor value. ``fast``: resize_into does it alone with the scalars
    ``mean``/``std`` (float) or raw pixels (quantized); else ``gain``/``bias`` per channel."""

    mean: Optional[Tuple[float, ...]]
    std: Optional[Tuple[float, ...]]
    source: str
    fast: bool
    scalar_mean: float = 127.5
    scalar_std: float = 127.5
    gain: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None


@dataclass
class ModelCard:
    labels: List[str]
    labels_source: str
    norm: Normalisation
    scores: Scores
    scores_source: str
    metadata: bool
    min_confidence: float = 0.0
    min_confidence_source: str = "default"

    def describe(self) -> dict:
        return {
            "labels": self.labels_source,
            "normalisation": self.norm.source,
            "scores": f"{self.scores.kind} ({self.scores_source})",
            "min_confidence": f"{self.min_confidence:g} ({self.min_confidence_source})",
        }


def _channels(values: Optional[Tuple[float, ...]], what: str) -> Optional[Tuple[float, ...]]:
    if values is None:
        return None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ModelError(f"the model's metadata {what} must have 1 or 3 finite values, got {list(values)}")
    return tuple(float(v) for v in values)


def _show(values: Tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _labels(cfg: Config, mf: ModelFile, classes: int) -> Tuple[List[str], str]:
    meta = mf.metadata
    files = meta.label_files if meta is not None else []
    if cfg.labels:
        labels = load_labels(cfg.labels, classes)
        if files:
            packed = parse_labels(mf.files.text(files[0].name), "the model's label file", None)
            if packed != labels:
                differ = sum(a != b for a, b in zip(packed, labels))
                log.warning("labels file %s differs from the label file in the model's metadata on %d of %d lines; "
                            "the config's file wins", cfg.labels, differ, classes)
        return labels, f"config {cfg.labels}"
    if not files:
        raise ModelError("the model carries no label file in its metadata: set labels in the config "
                         "(a file with one label a line)")
    chosen = files[0]
    if cfg.label_locale:
        match = [f for f in files if f.locale == cfg.label_locale]
        if not match:
            have = sorted({f.locale or "(none)" for f in files})
            raise ModelError(f"the model has no label file for label_locale {cfg.label_locale!r} (it has {have})")
        chosen = match[0]
    text = mf.files.text(chosen.name)
    return parse_labels(text, f"the label file {chosen.name} in the model", classes), f"metadata {chosen.name}"


def _normalisation(cfg: Config, mf: ModelFile, model: Model) -> Normalisation:
    meta = mf.metadata
    mean = (cfg.mean,) * 3 if cfg.mean is not None else _channels(meta.mean if meta else None, "mean")
    std = (cfg.std,) * 3 if cfg.std is not None else _channels(meta.std if meta else None, "std")
    source = "/".join([
        "config" if cfg.mean is not None else ("metadata" if mean is not None else "-"),
        "config" if cfg.std is not None else ("metadata" if std is not None else "-"),
    ])
    if std is not None and any(s == 0 for s in std):
        raise ModelError("the model's metadata std has a 0")
    spec = model.input
    if spec.dtype == np.float32:
        if mean is None or std is None:
            raise ModelError("float-input model without normalisation: its metadata has no mean/std; "
                             "set mean and std in the config (e.g. 127.5 and 127.5 for inputs in [-1, 1])")
        desc = f"mean {_show(mean)}, std {_show(std)} ({source})"
        if len(set(mean)) == 1 and len(set(std)) == 1:
            return Normalisation(mean, std, desc, True, mean[0], std[0])
        m, s = np.array(mean, np.float32), np.array(std, np.float32)
        return Normalisation(mean, std, desc + " per channel", False,
                             gain=(1.0 / s).astype(np.float32), bias=(-m / s).astype(np.float32))
    # Quantized input: which 8-bit value each pixel p must become.
    offset = -128.0 if spec.dtype == np.int8 else 0.0
    if mean is None or std is None or spec.scale == 0:
        return Normalisation(mean, std, "raw pixels (no mean/std)", True)
    m, s = np.array(mean, np.float64), np.array(std, np.float64)
    gain = 1.0 / (s * spec.scale)
    bias = spec.zero_point - m * gain
    # Largest distance, over p in 0..255, from the raw-pixel map resize_into writes.
    err = max(float(np.max(np.abs(bias - offset))), float(np.max(np.abs(gain * 255 + bias - 255 - offset))))
    desc = f"mean {_show(mean)}, std {_show(std)} ({source})"
    if err <= 1.0 + 1e-6:
        return Normalisation(mean, std, f"{desc}: raw pixels (quantization encodes it)", True,
                             float(np.mean(m)), float(np.mean(s)))
    return Normalisation(mean, std, f"{desc}: mapped through the input quantization", False,
                         gain=gain.astype(np.float32), bias=bias.astype(np.float32))


def _scores(cfg: Config, mf: ModelFile, model: Model) -> Tuple[Scores, str]:
    float_out = model.output_dtype == np.float32
    scale = 1.0 if float_out else model.output_scale
    zero = 0 if float_out else model.output_zero_point
    meta = mf.metadata
    if cfg.scores != "auto":
        return Scores(cfg.scores, scale, zero), "config"
    if meta is not None and meta.calibration is not None:
        if len(meta.calibration.params) != model.num_classes:
            raise ModelError(f"the model's score calibration file has {len(meta.calibration.params)} lines, "
                             f"the output has {model.num_classes} classes")
        return Scores("calibrated", scale, zero, meta.calibration), "metadata score calibration"
    if mf.graph.output_activation is not None:
        return Scores("probability", scale, zero), f"{mf.graph.output_activation.lower()} output"
    if not float_out:
        info = np.iinfo(model.output_dtype)
        lo, hi = (info.min - zero) * scale, (info.max - zero) * scale
        if lo >= -_PROB_SLACK and hi <= 1 + _PROB_SLACK:
            return Scores("probability", scale, zero), "quantized range [0, 1]"
    if meta is not None and meta.output_min is not None and meta.output_max is not None \
            and meta.output_min >= 0 and meta.output_max <= 1:
        return Scores("probability", scale, zero), "metadata range [0, 1]"
    return Scores("logits", scale, zero), "no softmax on the output"


def resolve(cfg: Config, model: Model, content: bytes) -> ModelCard:
    """Everything pyai needs to know beyond the interpreter, or a one-line ModelError."""
    mf = read(content)
    if mf.metadata is not None and mf.metadata.output_count > 1:
        raise ModelError(f"the model's metadata describes {mf.metadata.output_count} outputs; "
                         "pyai runs classifiers with one output")
    labels, labels_source = _labels(cfg, mf, model.num_classes)
    norm = _normalisation(cfg, mf, model)
    scores, scores_source = _scores(cfg, mf, model)
    min_conf, min_conf_source = _min_confidence(cfg, mf)
    return ModelCard(labels, labels_source, norm, scores, scores_source, mf.metadata is not None,
                     min_conf, min_conf_source)


def _min_confidence(cfg: Config, mf: ModelFile) -> Tuple[float, str]:
    """The default floor of an answer's scores: the config's, else the metadata's
    score threshold (on the scores as pyai answers them, calibration applied), else 0."""
    if cfg.min_confidence is not None:
        return cfg.min_confidence, "config"
    threshold = mf.metadata.score_threshold if mf.metadata is not None else None
    if threshold is not None:
        if not math.isfinite(threshold):
            raise ModelError(f"the model's metadata has a score threshold of {threshold}")
        return threshold, "metadata"
    return 0.0, "default"


_scratch = threading.local()


def fill(norm: Normalisation, frame: np.ndarray, slot: np.ndarray, box: Box) -> None:
    """Resize ``frame``'s ``box`` into ``slot`` (a view of an input tensor), normalised."""
    if norm.fast:
        resize_into(frame, slot, mean=norm.scalar_mean, std=norm.scalar_std, box=box)
        return
    # Per-channel or re-quantized input: the filtered pixels in float, then the map.
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.shape != slot.shape:
        buf = _scratch.buf = np.empty(slot.shape, np.float32)
    resize_into(frame, buf, mean=0.0, std=1.0, box=box)
    _map_into(norm, buf, slot)


def _map_into(norm: Normalisation, pixels: np.ndarray, slot: np.ndarray) -> None:
    """Float pixel values (0..255, overwritten) -> ``slot`` through the per-channel map."""
    pixels *= norm.gain
    pixels += norm.bias
    if slot.dtype == np.float32:
        slot[...] = pixels
        return
    info = np.iinfo(slot.dtype)
    np.rint(pixels, out=pixels)
    np.clip(pixels, info.min, info.max, out=pixels)
    slot[...] = pixels


def pixels_into(norm: Normalisation, pixels: np.ndarray, slot: np.ndarray) -> None:
    """An already resized uint8 RGB image -> ``slot``, normalised as :func:`fill` does
    (the careful reference path, pyai/reference.py)."""
    if not norm.fast:
        _map_into(norm, pixels.astype(np.float32), slot)
    elif slot.dtype == np.float32:
        slot[...] = (pixels.astype(np.float32) - norm.scalar_mean) / norm.scalar_std
    elif slot.dtype == np.int8:
        slot[...] = (pixels.astype(np.int16) - 128).astype(np.int8)
    else:
        slot[...] = pixels
