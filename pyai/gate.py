"""The unchanged-frame gate: a frame that looks like the last one the model ran on,
at the same call site, gets that frame's scores instead of a decode, a resize and
an invoke.

The signature is the mean colour of each cell of a 16x16 grid over the region the
model sees, in grey levels. For a baseline JPEG (every camera's) it comes straight
from the entropy-coded data: a block's DC coefficient is its mean, so
``native_dcsig`` walks the Huffman codes on both cores without decoding a pixel.
Other images (PNG, progressive JPEG, or no native build) take the signature from
the model's input tensor after the resize, which saves only the invoke.

A frame has changed when enough of its cells have, as a motion detector counts
them (:func:`changed_cells`): the brightness change that best maps the reference's
cells onto this frame's (a gain and an offset, least squares) is taken away first,
so a camera's gain drift or a flickering light moves no cell, while an object that
enters, moves or leaves moves the cells it covers whatever the rest of the frame
does; a frame whose typical cell moved, or whose cells hardly correlate with the
reference's, is another scene. Sensor noise and JPEG re-encoding average out
inside a cell. The same rule
is applied to the first ``STOP_ROWS`` cell rows alone and to the whole grid
(:meth:`Gate.changed`); the walker asks the first question as soon as those rows
are decoded and stops there on a yes, so a cut to another scene costs two cell
rows of the walk. The verdict depends on the frame and the site's reference only:
not on how the walk was split over the cores, nor on the run.

An answer is reused only while the model agrees with it: a still scene is
still, but the model's answer to it is not always (from one noisy shot to the
next it may flicker between near-tied classes, or, on a dark view, be noise).
After a change the model runs on the first frames of the new scene: the first
one's answer is reused once ``confirm_runs`` (2) more runs agree with it
(:func:`answers_agree`: each leading by at least ``confirm_lead``, 0.1, with the
same top-1). Then every ``check_every`` (32) reused frames the model runs again
on the still scene and must agree again; else that frame's answer starts over as
the one to confirm, and the site backs off. ``min_margin`` > 0 reuses only
answers whose top-1 led the second by that much.

A frame costs the walk only when an answer could come of it. After a changed
frame the site has no reference (a stopped walk gives no whole signature); the
next frame is walked whole to become one. While frames keep changing the site
backs off: 1, 3, 7, 15, then 31 frames go straight to the model before the next
walk, so a busy scene pays the walk on two frames in 33, and a still one is
answered again within 32 frames of settling.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np

try:
    # Built beside native_preproc (no libjpeg needed); without it every frame's
    # signature comes from the input tensor.
    import native_dcsig
except ImportError:  # pragma: no cover - depends on the install
    native_dcsig = None

# Cells per short side of the input tensor: 16x16 cells of 14x14 values for a
# 224x224 model input.
GRID = 16
# Values sampled per cell side (every third one of 14, from the second: 5x5):
# enough for a cell's mean under noise, at an eighth of the memory traffic.
SAMPLES = 4
# Call sites remembered (least recently used first out): eKuiper sends one per
# rule, operator and instance, so a few hundred cover any realistic node.
MAX_SITES = 256
# The threshold ``skip_unchanged = true`` stands for: grey levels a cell's colour
# must move by, after the brightness correction, to count as changed; and how
# many changed cells make a changed frame (docs/fixed-cameras.md, the gate study).
DEFAULT_THRESHOLD = 8.0
MIN_CELLS = 3
# Reuse any answer (the least lead of its top-1 over the second: none).
DEFAULT_MIN_MARGIN = 0.0
# A near tie, in confidence units: a top-1 leading its runner-up by less than this
# may take the runner-up's place from one shot of a still scene to the next, so
# an answer whose top-1 is that runner-up still agrees (the gate study's
# definition of agreement with the gate off).
NEAR_TIE = 0.1
# Two answers agree only when both lead by at least this (confidence units), and
# the answer is reused once CONFIRM_RUNS runs on the unchanged scene have agreed
# with it: the gate study's choice on every part it has looked at (#19: with one
# run, the third held-out part's night and flicker scenes kept 98.75%; near ties
# confirmed by a lower lead kept 86.7-98.75% on the held-out parts' night,
# flicker and pan).
DEFAULT_CONFIRM_LEAD = 0.1
DEFAULT_CONFIRM_RUNS = 2
# Reused answers between two runs of the model that check them on a still scene
# (0: never): a bound on how stale a reused answer can be (about a second at 30
# fps), as MAX_BACKOFF bounds how long a settled scene waits to be reused. Not
# tuned; it costs a still scene one model run in 33 frames.
DEFAULT_CHECK_EVERY = 32
# Cell rows the first verdict is taken on (the walker's early stop).
STOP_ROWS = 2
# A reference flatter than this (variance of its cells, grey levels squared)
# gives no gain to fit: the offset alone is taken away.
_FLAT = 1.0
# Two signatures correlating less than this are of different scenes, however
# faint (noise and a brightness change leave two shots of one scene at 0.99+).
MIN_CORRELATION = 0.9
# The brightness correction's gain is kept within these.
_GAIN = (0.5, 2.0)


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


# The walker's early question: (cells so far, rows, cols) -> changed?
Stop = Callable[[memoryview, int, int], bool]


def jpeg_signature(
    data: bytes | memoryview, box: Tuple[int, int, int, int], stop: Optional[Stop] = None, threads: int = 2,
) -> Optional[np.ndarray]:
    """Cell means (GRID x GRID, RGB, grey levels) of ``box`` of a JPEG frame from its
    DC coefficients, or None when ``stop`` (:meth:`Gate.stopper`), asked about the
    first STOP_ROWS cell rows, said the frame has changed. Raises
    NotImplementedError for a JPEG the walker does not read (progressive, CMYK,
    ...) or when native_dcsig is not built, and ValueError for corrupt data."""
    if native_dcsig is None:
        raise NotImplementedError("native_dcsig is not built")
    return native_dcsig.cell_means(data, box, GRID, stop, STOP_ROWS, threads)


def walker_available() -> bool:
    """True when JPEG signatures come from the DC walk (native_dcsig is built)."""
    return native_dcsig is not None


def walker_stats() -> Dict[str, int]:
    """The JPEG walker's counters over the process: calls, split (on two cores),
    stopped (early, a changed frame); {} without native_dcsig."""
    return dict(native_dcsig.stats()) if native_dcsig is not None else {}


def source_box(width: int, height: int, box: Optional[Tuple[float, float, float, float]]) -> Tuple[int, int, int, int]:
    """A crop box in a frame's pixels (None: all of it), rounded to whole pixels."""
    if box is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = box
    return (max(0, int(round(x0))), max(0, int(round(y0))),
            min(width, max(1, int(round(x1)))), min(height, max(1, int(round(y1)))))


def residuals(sig: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """Per cell of two signatures of one shape (rows, cols, C), averaged over the
    channels, in grey levels, (rows, cols) each: how far ``sig``'s colour is from
    ``ref``'s once the brightness change that best maps ``ref`` onto ``sig`` is
    taken away (one gain and one offset for all cells and channels, least
    squares), and the allowance of that cell: half of the correction there; and
    the correlation of the two (1.0 when either is flat).

    The allowance covers what a gain does not: pixels clipped at white (or black)
    do not follow it, so under a flickering light a bright cell moves less than
    the fit says, by up to about the correction itself. At a steady light the
    correction is near nothing and so is the allowance. In float64 and by plain
    sums in a fixed order: the same figures on every machine, so the same verdicts."""
    y = sig.astype(np.float64).reshape(-1)
    x = ref.astype(np.float64).reshape(-1)
    xm, ym = x.mean(), y.mean()
    dx, dy = x - xm, y - ym
    var, var_y = float(np.dot(dx, dx)) / x.size, float(np.dot(dy, dy)) / y.size
    cov = float(np.dot(dx, dy)) / x.size
    corr = cov / float(np.sqrt(var * var_y)) if var > _FLAT and var_y > _FLAT else 1.0
    gain = cov / var if var > _FLAT else 1.0
    gain = min(max(gain, _GAIN[0]), _GAIN[1])
    fitted = ym + gain * dx
    r = np.abs(y - fitted).reshape(sig.shape).mean(axis=-1)
    allowance = 0.5 * np.abs(fitted - x).reshape(sig.shape).mean(axis=-1)
    return r, allowance, corr


def changed_cells(sig: np.ndarray, ref: np.ndarray, threshold: float) -> int:
    """How many cells of ``sig`` moved by more than ``threshold`` grey levels from
    ``ref``'s beyond the brightness correction and its allowance (:func:`residuals`);
    every cell when the typical cell (the median) moved by more than ``threshold``
    before the allowance or the two correlate less than MIN_CORRELATION (the
    brightness fit explains little: another scene, even a faint one), or when the
    shapes differ (another frame size or crop)."""
    cells = max(int(np.prod(sig.shape[:2])), int(np.prod(ref.shape[:2])))
    if sig.shape != ref.shape:
        return cells
    r, allowance, corr = residuals(sig, ref)
    if float(np.median(r)) > threshold or corr < MIN_CORRELATION:
        return cells
    return int(np.count_nonzero(r - allowance > threshold))


# Frames sent straight to the model after a changed frame, doubling while frames
# keep changing (1, 3, 7, 15, 31): the walk is only worth its cost on a still
# scene, and a busy one then pays it on 2 frames in 33 (a whole walk and one that
# stops), about 1% of its calls; a scene that settles is answered again within
# 32 frames (about a second at 30 fps).
MAX_BACKOFF = 31


def answers_agree(ref_top1: int, ref_lead: float, top1: int, second: int, lead: float,
                  confirm_lead: float = DEFAULT_CONFIRM_LEAD, near_tie: float = NEAR_TIE) -> bool:
    """Whether an answer whose top-1 is ``ref_top1`` (leading by ``ref_lead``) may
    stand for the model's answer to a frame of the same scene (``top1`` leading
    ``second`` by ``lead``): both lead by at least ``confirm_lead``, and the two
    have the same top-1 or the frame's is a near tie (``lead`` < ``near_tie``)
    whose runner-up is the answer's top-1 (at ``confirm_lead`` >= ``near_tie``,
    the default, only the same top-1)."""
    if min(ref_lead, lead) < confirm_lead:
        return False
    return ref_top1 == top1 or (lead < near_tie and ref_top1 == second)


@dataclass
class _Site:
    kind: str = ""  # which signature: "jpeg" (DC cells) or "tensor"
    signature: Optional[np.ndarray] = None  # of the reference frame (the answer's), when reusable
    scores: Optional[np.ndarray] = None  # the model's raw output row for that frame
    top1: int = -1  # that frame's top-1 class and its lead over the second
    lead: float = 0.0
    since_run: int = 0  # answers reused since the model last ran on the scene
    agreed: int = 0  # runs on the still scene that agreed with the answer (confirm_runs: reused)
    skip: int = 0  # frames left to send to the model without a walk
    backoff: int = 0  # the next skip after a changed frame
    checked: int = 0
    reused: int = 0
    run: int = 0


@dataclass
class Counters:
    checked: int = 0
    reused: int = 0
    run: int = 0


@dataclass
class Plan:
    """What to do with one frame at a site (from :meth:`Gate.plan`)."""

    site: str
    kind: str
    walk: bool  # take this frame's signature (else: straight to the model)
    ref: Optional[np.ndarray] = None  # compare with this (an answer that may be reused)
    scores: Optional[np.ndarray] = None  # ... which is this
    confirmed: bool = False  # ... and may be reused (else: run again to confirm it)
    signature: Optional[np.ndarray] = None  # the frame's, when taken whole
    same: bool = False  # the frame has not changed from ref (decided)


# Takes the frame's signature; with a reference, may stop early (None) when the
# stop function it is given says the frame has changed.
Scan = Callable[[Optional[Stop]], Optional[np.ndarray]]


class Gate:
    """Per call site: the signature and raw scores of the last frame the model ran on.

    Thread-safe. A frame goes ``plan`` -> (``scan`` its signature) -> ``decide``:
    the stored scores when it has not :meth:`changed` from the site's reference
    (and that answer led by at least ``min_margin``), else None, and the caller
    runs the model and calls ``store``. :meth:`consult` does the first three.
    Sites never share anything.
    """

    def __init__(self, threshold: float, min_margin: float = DEFAULT_MIN_MARGIN, max_sites: int = MAX_SITES,
                 min_cells: int = MIN_CELLS, confirm_lead: float = DEFAULT_CONFIRM_LEAD,
                 check_every: int = DEFAULT_CHECK_EVERY, confirm_runs: int = DEFAULT_CONFIRM_RUNS):
        if threshold <= 0:
            raise ValueError("the gate's threshold must be > 0")
        if min_cells < 1:
            raise ValueError("the gate's min_cells must be >= 1")
        if check_every < 0:
            raise ValueError("the gate's check_every must be >= 0 (0 = never)")
        if confirm_runs < 1:
            raise ValueError("the gate's confirm_runs must be >= 1")
        self.threshold = threshold
        self.min_cells = min_cells
        self.min_margin = min_margin
        self.confirm_lead = confirm_lead
        self.check_every = check_every
        self.confirm_runs = confirm_runs
        self.max_sites = max_sites
        self._sites: "OrderedDict[str, _Site]" = OrderedDict()
        self._lock = threading.Lock()
        self.totals = Counters()
        self.evicted = 0

    def far(self, sig: np.ndarray, ref: np.ndarray) -> bool:
        """The one rule: at least ``min_cells`` cells moved by more than ``threshold``."""
        return changed_cells(sig, ref, self.threshold) >= self.min_cells

    def changed(self, sig: np.ndarray, ref: np.ndarray) -> bool:
        """Whether a frame of signature ``sig`` has changed from ``ref``: :meth:`far`
        on the first STOP_ROWS cell rows (the walker's early question, asked again
        here for a signature that did not come from a stopped walk) or on all."""
        if sig.shape != ref.shape:
            return True
        if sig.shape[0] > STOP_ROWS and self.far(sig[:STOP_ROWS], ref[:STOP_ROWS]):
            return True
        return self.far(sig, ref)

    def stopper(self, ref: Optional[np.ndarray]) -> Optional[Stop]:
        """The walker's early question for a frame compared with ``ref``: :meth:`far`
        on the first rows it has decoded (a grid of another size: changed)."""
        if ref is None:
            return None

        def stop(cells: memoryview, rows: int, cols: int) -> bool:
            if rows != STOP_ROWS or ref.shape[0] <= rows or ref.shape[1] != cols:
                return True
            head = np.frombuffer(cells, np.float32).reshape(rows, cols, ref.shape[2])
            return self.far(head, ref[:rows])

        return stop

    def plan(self, site: str, kind: str) -> Plan:
        with self._lock:
            state = self._sites.get(site)
            if state is None:
                return Plan(site, kind, walk=True)
            self._sites.move_to_end(site)
            if state.skip > 0:
                state.skip -= 1
                return Plan(site, kind, walk=False)
            if state.signature is not None and state.kind == kind:
                # Due a check: the model runs on this frame even if it has not changed.
                due = 0 < self.check_every <= state.since_run
                return Plan(site, kind, walk=True, ref=state.signature, scores=state.scores,
                            confirmed=state.agreed >= self.confirm_runs and not due)
            return Plan(site, kind, walk=True)

    def decide(self, plan: Plan, sig: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """After a walk: the reused scores for a frame whose signature is ``sig``
        (None: the walk stopped early, a changed frame, or it failed), or None: run
        the model."""
        plan.signature = sig
        plan.same = plan.ref is not None and sig is not None and not self.changed(sig, plan.ref)
        reuse = plan.same and plan.confirmed
        with self._lock:
            self.totals.checked += 1
            if reuse:
                self.totals.reused += 1
            state = self._sites.get(plan.site)
            if state is not None:
                state.checked += 1
                if reuse:
                    state.reused += 1
                    state.since_run += 1
                    state.backoff = 0
        return plan.scores if reuse else None

    def consult(self, site: str, kind: str, scan: Scan) -> Tuple[Plan, Optional[np.ndarray]]:
        """plan, scan and decide: ``scan(stop)`` gives the frame's signature, or None
        when ``stop`` (None without a reference) ended it early. Returns the plan
        (for :meth:`store`) and the reused scores or None."""
        plan = self.plan(site, kind)
        if not plan.walk:
            return plan, None
        return plan, self.decide(plan, scan(self.stopper(plan.ref)))

    def store(self, plan: Plan, scores: np.ndarray, margin: float, top1: Optional[int] = None,
              second: Optional[int] = None) -> None:
        """Remember the frame the model just ran on (``scores`` is copied), with the
        lead of its top-1 score over the second (``margin``, in confidence units),
        its top-1 class and the runner-up (default: from ``scores``' order).

        A frame that had not changed from the reference, whose answer agrees with
        the reference's (:func:`answers_agree`), counts towards confirming it
        (``confirm_runs``) or, confirmed, passes the check: the reference and its
        answer stay, reused until the next check (``check_every``) or change.
        Otherwise this frame becomes the reference, its answer unconfirmed, and
        where the model disagreed with itself on a still scene (a dark or
        featureless view, its answer noise) the site backs off as after a change."""
        reusable = plan.signature is not None and margin >= self.min_margin
        with self._lock:
            self.totals.run += 1
            state = self._sites.get(plan.site)
            created = state is None
            if state is None:
                state = self._sites[plan.site] = _Site()
                if len(self._sites) > self.max_sites:
                    self._sites.popitem(last=False)
                    self.evicted += 1
            else:
                self._sites.move_to_end(plan.site)
            state.run += 1
            if not plan.walk:
                return  # a frame sent straight to the model: the reference stays
            if created:
                state.checked += 1  # its first frame, walked before the site existed
            if top1 is None or second is None:
                best, runner_up = top2(scores)
                top1 = best if top1 is None else top1
                second = runner_up if second is None else second
            agreed = (plan.same and plan.ref is not None and state.signature is plan.ref and reusable
                      and answers_agree(state.top1, state.lead, top1, second, margin, self.confirm_lead))
            state.since_run = 0
            if agreed:
                state.agreed += 1
                return
            state.top1, state.lead = top1, margin
            state.kind = plan.kind
            state.signature = plan.signature if reusable else None
            state.scores = scores.copy() if reusable else None
            state.agreed = 0
            if plan.ref is not None or not reusable:
                # Changed, or the model disagreed with itself on the still scene (or
                # not sure enough to reuse): back off while it lasts.
                state.skip = state.backoff
                state.backoff = min(2 * state.backoff + 1, MAX_BACKOFF)

    def stats(self) -> Dict[str, object]:
        """Frames ``checked`` (walked for a signature), ``reused`` (answered by the
        gate) and ``run`` (by the model), in all and per site; checked + the frames
        sent straight to the model while a site backs off = reused + run."""
        with self._lock:
            sites = {
                site_name(k): {"checked": s.checked, "reused": s.reused, "run": s.run}
                for k, s in self._sites.items()
            }
            return {
                "threshold": self.threshold,
                "min_cells": self.min_cells,
                "min_margin": self.min_margin,
                "confirm_lead": self.confirm_lead,
                "confirm_runs": self.confirm_runs,
                "check_every": self.check_every,
                "checked": self.totals.checked,
                "reused": self.totals.reused,
                "run": self.totals.run,
                "sites_evicted": self.evicted,
                "sites": sites,
            }


def top2(scores: np.ndarray) -> Tuple[int, int]:
    """The best and second-best indices of a row (ties: the lower index first, as
    answers are ordered); the second is -1 for a row of one."""
    flat = scores.reshape(-1)
    if flat.size < 2:
        return 0, -1
    order = np.argsort(-flat.astype(np.float64), kind="stable")
    return int(order[0]), int(order[1])


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
