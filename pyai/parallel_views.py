"""Several views of one frame run at once, each on its own one-thread interpreter.

A frame with several views (``crop_mode=squares``: the centre square and the whole
frame by default) can use a second core without splitting any operator: one view
per core. As a batch on one interpreter with two threads, XNNPACK splits every
operator of both views over its pool, and the pool's threads meet at a barrier
after each one; on a machine where kuiperd, the broker and the cameras take
turns on the same cores, a thread that loses its core holds the other one at the
barrier (spinning). Independent one-thread interpreters have no barrier until
the frame's last view. Measured in one process on the 2-core VM (docs/sizing.md):
the same latency or lower, the same CPU.

``lanes`` interpreters take the views in turn (view i on lane i mod lanes); the
calling thread runs lane 0, helper threads the others. The caller holds the
classifier's lock, so one frame at a time uses the lanes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, List, Optional, Sequence

import numpy as np

from .crop import Box
from .model import Model

#: fill(box, slot): resize the frame's ``box`` into ``slot`` (one input tensor row).
Fill = Callable[[Optional[Box], np.ndarray], None]


class ParallelViews:
    """``lanes`` one-thread interpreters of one model, the views of a frame spread over them."""

    def __init__(self, path: str, content: bytes, lanes: int):
        if lanes < 2:
            raise ValueError("parallel views need at least 2 lanes")
        self.models: List[Model] = [Model(path, 1, model_content=content) for _ in range(lanes)]
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(lanes - 1, thread_name_prefix="pyai-view")
        for model in self.models:  # pay the delegate set-up now, not on the first frame
            model.input_tensor[...] = 0
            model.run()

    @property
    def lanes(self) -> int:
        return len(self.models)

    def _lane(self, lane: int, boxes: Sequence[Optional[Box]], fill: Fill) -> List[np.ndarray]:
        model = self.models[lane]
        rows = []
        for box in boxes[lane::self.lanes]:
            fill(box, model.input_slot(0))
            rows.append(model.dequantize(model.run()[0]))
        return rows

    def run(self, boxes: Sequence[Optional[Box]], fill: Fill) -> np.ndarray:
        """(views, classes) probabilities of ``boxes``, in their order."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("parallel views are closed")
        helpers = [pool.submit(self._lane, lane, boxes, fill) for lane in range(1, min(self.lanes, len(boxes)))]
        try:
            first = self._lane(0, boxes, fill)
        finally:
            # Never leave a helper running after this call: the next frame (or close())
            # would use its lane's interpreter from a second thread at the same time.
            wait(helpers)
        by_lane = [first] + [f.result() for f in helpers]
        rows: List[np.ndarray] = [np.empty(0)] * len(boxes)
        for lane, lane_rows in enumerate(by_lane):
            rows[lane::self.lanes] = lane_rows
        return np.stack(rows)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
