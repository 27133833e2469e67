"""One frame through the unchanged-frame gate: which signature it gets, then
plan -> signature -> decide -> (run the model -> store).

A baseline JPEG gets its signature from the DC walk before anything is decoded,
so a reused answer costs the walk alone. Any other image (or a JPEG the walker
does not read) gets it from the model's input tensor after the resize, which
saves only the invoke. The classifier hands over how to decode the frame and how
to fill and run the model; the gate's state and decisions are ``pyai.gate.Gate``'s.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from .gate import Gate, Plan, jpeg_signature, signature

# Looks at the filled input tensor before the invoke: the reused scores, or None.
Peek = Callable[[np.ndarray], Optional[np.ndarray]]
# Fills the input tensor from a decoded frame, calls the peek (when given) and,
# unless it answered, runs the model: a row of raw scores the caller may keep.
Infer = Callable[[np.ndarray, Optional[Peek]], np.ndarray]
# A row of raw scores -> its top-1 class, the runner-up, and how far the top-1's
# confidence leads the runner-up's (in confidence units, as answers are given).
Rank = Callable[[np.ndarray], Tuple[int, int, float]]


class Gatekeeper:
    """The classifier's one door to the gate (``skip_unchanged`` on)."""

    def __init__(self, gate: Gate, walk_threads: int, signature_scale: float, rank: Rank):
        self.gate = gate
        # The DC walk runs instead of the split decoder, on the same cores.
        self.walk_threads = walk_threads
        # Signatures in grey levels whatever the input type.
        self.signature_scale = signature_scale
        self.rank = rank

    def scores(self, site: str, data: bytes | memoryview, kind: str, box: Tuple[int, int, int, int],
               decode: Callable[[], np.ndarray], infer: Infer) -> np.ndarray:
        """Raw scores for one encoded image of ``kind`` ("jpeg", "png", ...) at
        ``site``: reused from the site's last run frame when this one looks the
        same, else from the model (and remembered). ``box`` is the region the
        JPEG signature covers, in the source's pixels."""
        if kind == "jpeg":
            plan = self.gate.plan(site, "jpeg")
            try:
                reused = self._walk(plan, data, box) if plan.walk else None
            except NotImplementedError:
                pass  # a JPEG the walker does not read: the tensor's signature below
            else:
                if reused is not None:
                    return reused
                return self._store(plan, infer(decode(), None))
        return self.frame_scores(site, decode(), infer)

    def frame_scores(self, site: str, frame: np.ndarray, infer: Infer) -> np.ndarray:
        """Raw scores for one decoded frame at ``site``, its signature taken from the
        input tensor the resize just wrote (in cache), which a changed frame goes on
        to run with: the check costs a changed frame only the sampling. The tensor is
        of the crop region, so a different crop is a different frame."""
        seen: dict = {}

        def peek(tensor: np.ndarray) -> Optional[np.ndarray]:
            plan, reused = self.gate.consult(site, "tensor",
                                             lambda stop: signature(tensor, self.signature_scale))
            seen["plan"], seen["reused"] = plan, reused
            return reused

        raw = infer(frame, peek)
        if seen["reused"] is not None:
            return raw
        return self._store(seen["plan"], raw)

    def _walk(self, plan: Plan, data: bytes | memoryview, box: Tuple[int, int, int, int]) -> Optional[np.ndarray]:
        """The JPEG's signature from its DC coefficients, checked at ``plan``'s site:
        the reused scores, or None."""
        try:
            sig = jpeg_signature(data, box, self.gate.stopper(plan.ref), self.walk_threads)
        except ValueError:
            # Corrupt by the walker's strict rules: never a reused answer. The
            # decoder has the last word (and the error message).
            sig = None
        return self.gate.decide(plan, sig)

    def _store(self, plan: Plan, raw: np.ndarray) -> np.ndarray:
        if not plan.walk:
            # Sent straight to the model while the site backs off: only counted, so
            # nothing to rank (most frames of a busy camera).
            self.gate.store(plan, raw, 0.0)
            return raw
        top1, second, lead = self.rank(raw)
        self.gate.store(plan, raw, lead, top1, second)
        return raw
