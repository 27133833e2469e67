"""The unchanged-frame gate: a frame that looks like the last one the model ran on,
at the same call site, gets that frame's scores instead of a resize and an invoke.

Where the signature comes from, and why: the entropy decoding of a JPEG is most
of its decode and cannot be skipped without restart markers, so a separate cheap
decode for the signature (DC only, 1/8 scale, grey) still costs 0.93 ms for a
720p frame and 1.97 ms for a 1080p one, against 1.24 / 2.13 ms for the scaled
decode ``labelImage`` runs on both cores. Run before the real decode, it would
add 15-30% to every changed frame. So the signature is taken from the model's
input tensor right after the resize has written it (the mean of a sample of each
cell of a 16x16 grid), where it is still in this core's cache: a changed frame
goes on to the invoke with that tensor, and pays only the sampling. Taken from
the decoded frame instead, half of which the split decoder's helper wrote on the
other core, the same sampling cost 0.18 ms. An unchanged frame still pays the
decode and the resize, not the invoke, and no top-k on a cold cache.

The distance is the mean absolute difference of the cells' means (grey levels,
per channel), after taking away the mean difference itself: a uniform
brightness drift alone never forces a run, while anything that moves the
picture does. Sensor noise and JPEG re-encoding average out inside a cell; a
pixel of camera jitter moves only the cells on strong edges, a little.

A look-alike frame is not enough: an answer is reused only if the model was sure
of it, its top-1 score ahead of the second by at least ``min_margin``. Where the
two best classes are nearly tied, frames that differ by little more than noise
change the top-1 (in the study's Big Buck Bunny clip the top-1 changes between
frames 0.2 grey levels apart), so such an answer is worth no more than the next
run.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

# Cells per short side of the input tensor: 16x16 cells of 14x14 values for a
# 224x224 model input.
GRID = 16
# Values sampled per cell side (every third one of 14, from the second: 5x5):
# enough for a cell's mean under noise, at an eighth of the memory traffic.
SAMPLES = 4
# Call sites remembered (least recently used first out): eKuiper sends one per
# rule, operator and instance, so a few hundred cover any realistic node.
MAX_SITES = 256
# The threshold ``skip_unchanged = true`` stands for, and the least lead of the
# top-1 score over the second for an answer to be reused (the README's gate study).
DEFAULT_THRESHOLD = 1.5
DEFAULT_MIN_MARGIN = 0.3


# Sums of a few sampled values fit these without overflow and without the cost
# of a float reduction (numpy's mean over strided axes took 0.12 ms, these 0.03).
_ACCUMULATOR = {np.dtype(np.uint8): np.uint16, np.dtype(np.int8): np.int16, np.dtype(np.float32): np.float32}


def signature(frame: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Cell means of an (H, W, C) frame or input tensor, each from a sample of every
    ``cell // SAMPLES``-th row and column, times ``scale`` (a float tensor's ``std``,
    back to grey levels): float32 (rows, cols, C)."""
    h, w, c = frame.shape
    cell = max(1, min(h, w) // GRID)
    step = max(1, cell // SAMPLES)
    rows, cols = h // cell, w // cell
    if rows == 0 or cols == 0:
        return frame.astype(np.float32) * np.float32(scale)
    acc = _ACCUMULATOR.get(frame.dtype, np.float64)
    first = step // 2
    picked = len(range(first, cell, step))
    x = frame[: rows * cell, : cols * cell].reshape(rows, cell, cols * cell * c)
    # Sampled rows of each cell band summed first (whole rows: contiguous adds), then
    # the sampled columns of each cell.
    r = np.add.reduce(x[:, first::step, :], axis=1, dtype=acc)
    r = np.add.reduce(r.reshape(rows, cols, cell, c)[:, :, first::step, :], axis=2, dtype=acc)
    return r.astype(np.float32) * np.float32(scale / (picked * picked))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two signatures after removing their mean
    difference (grey levels); infinite when their shapes differ."""
    if a.shape != b.shape:
        return float("inf")
    d = a - b
    return float(np.abs(d - d.mean()).mean())


@dataclass
class _Site:
    signature: np.ndarray
    scores: np.ndarray  # the model's raw output row for that frame
    reusable: bool  # its top-1 led by at least min_margin
    checked: int = 0
    reused: int = 0
    run: int = 0


@dataclass
class Counters:
    checked: int = 0
    reused: int = 0
    run: int = 0


class Gate:
    """Per call site: the signature and raw scores of the last frame the model ran on.

    Thread-safe. ``match`` answers the stored scores for a frame whose signature is
    within ``threshold`` of the site's, if the model was sure of that answer (its
    margin at least ``min_margin``), or None: the caller runs the model and calls
    ``store``. Sites never share anything.
    """

    def __init__(self, threshold: float, min_margin: float = DEFAULT_MIN_MARGIN, max_sites: int = MAX_SITES):
        if threshold <= 0:
            raise ValueError("the gate's threshold must be > 0")
        self.threshold = threshold
        self.min_margin = min_margin
        self.max_sites = max_sites
        self._sites: "OrderedDict[str, _Site]" = OrderedDict()
        self._lock = threading.Lock()
        self.totals = Counters()
        self.evicted = 0

    def match(self, site: str, sig: np.ndarray) -> Optional[np.ndarray]:
        with self._lock:
            self.totals.checked += 1
            state = self._sites.get(site)
            if state is None:
                return None
            self._sites.move_to_end(site)
            state.checked += 1
            if not state.reusable or distance(sig, state.signature) > self.threshold:
                return None
            state.reused += 1
            self.totals.reused += 1
            return state.scores

    def store(self, site: str, sig: np.ndarray, scores: np.ndarray, margin: float) -> None:
        """Remember the frame the model just ran on (``scores`` is copied) and the lead
        of its top-1 score over the second (``margin``, in confidence units)."""
        reusable = margin >= self.min_margin
        with self._lock:
            self.totals.run += 1
            state = self._sites.get(site)
            if state is None:
                # A site's first frame was counted as checked by match() but not per site.
                state = self._sites[site] = _Site(sig, scores.copy(), reusable, checked=1)
                if len(self._sites) > self.max_sites:
                    self._sites.popitem(last=False)
                    self.evicted += 1
            else:
                state.signature = sig
                state.scores = scores.copy()
                state.reusable = reusable
                self._sites.move_to_end(site)
            state.run += 1

    def stats(self) -> Dict[str, object]:
        with self._lock:
            sites = {
                site_name(k): {"checked": s.checked, "reused": s.reused, "run": s.run}
                for k, s in self._sites.items()
            }
            return {
                "threshold": self.threshold,
                "min_margin": self.min_margin,
                "checked": self.totals.checked,
                "reused": self.totals.reused,
                "run": self.totals.run,
                "sites_evicted": self.evicted,
                "sites": sites,
            }


def margin(scores: np.ndarray, scale: float = 1.0) -> float:
    """How far the best raw score leads the second, times ``scale`` (a quantized
    output's scale; the zero point cancels out)."""
    flat = scores.reshape(-1)
    if flat.size < 2:
        return float("inf")
    two = np.partition(flat, flat.size - 2)[-2:]
    return (float(two[1]) - float(two[0])) * scale


def site_name(key: str) -> str:
    """A readable name for a site key: eKuiper's function meta (a JSON object) becomes
    ``ruleId/opId/instanceId/funcId``; any other key is itself."""
    if not key.startswith("{"):
        return key
    try:
        meta = json.loads(key)
    except ValueError:
        return key
    if not isinstance(meta, dict):
        return key
    return "/".join(str(meta.get(k, "")) for k in ("ruleId", "opId", "instanceId", "funcId"))
