"""Engine counters and latency percentiles in bounded memory.

Each latency keeps its last ``window`` samples in a preallocated ring, so a
plugin that runs for months uses the same memory as one that just started, and
the percentiles describe recent behaviour rather than the whole history.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List

import numpy as np

STAGES = ("queue_wait", "decode", "inference", "inference_per_frame", "total")


class Reservoir:
    """The last ``size`` samples of one latency (seconds), plus an all-time count."""

    def __init__(self, size: int = 1024):
        self._buf = np.zeros(size, dtype=np.float64)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._buf[self._count % len(self._buf)] = seconds
        self._count += 1

    def summary(self) -> Dict[str, Any]:
        n = min(self._count, len(self._buf))
        if n == 0:
            return {"count": 0}
        p50, p90, p99 = np.percentile(self._buf[:n], (50, 90, 99)) * 1000.0
        return {
            "count": self._count,
            "window": n,
            "mean_ms": round(float(self._buf[:n].mean()) * 1000.0, 3),
            "p50_ms": round(float(p50), 3),
            "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3),
            "max_ms": round(float(self._buf[:n].max()) * 1000.0, 3),
        }


class EngineStats:
    """Thread-safe counters of an engine.

    Every accepted frame ends in exactly one of completed, failed (BadInput),
    errors (anything unexpected) or cancelled, so
    ``submitted == completed + failed + errors + cancelled + in_flight``, and the
    batch-size histogram sums to completed plus frames whose inference raised.
    """

    def __init__(self, max_batch: int, window: int = 1024):
        self._lock = threading.Lock()
        self.started = time.time()
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.errors = 0
        self.cancelled = 0
        self.batches = 0
        # batch_sizes[k] = how many inference runs took k frames.
        self.batch_sizes: List[int] = [0] * (max_batch + 1)
        self._lat = {name: Reservoir(window) for name in STAGES}

    def on_submit(self) -> None:
        with self._lock:
            self.submitted += 1

    def on_decoded(self, decode: float) -> None:
        with self._lock:
            self._lat["decode"].add(decode)

    def on_batch(self, frames: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.batch_sizes[frames] += 1
            self._lat["inference"].add(seconds)
            self._lat["inference_per_frame"].add(seconds / frames)

    def on_done(self, queue_wait: float, total: float) -> None:
        """A frame got its result; ``queue_wait`` is its wait for a decoder plus
        its wait for the inference thread."""
        with self._lock:
            self.completed += 1
            self._lat["queue_wait"].add(queue_wait)
            self._lat["total"].add(total)

    def on_failed(self, expected: bool) -> None:
        with self._lock:
            if expected:
                self.failed += 1
            else:
                self.errors += 1

    def on_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    def snapshot(self) -> Dict[str, Any]:
        """Everything as a JSON-able dict (what ``pyaiStats()`` returns)."""
        with self._lock:
            done = self.completed + self.failed + self.errors + self.cancelled
            return {
                "uptime_s": round(time.time() - self.started, 1),
                "submitted": self.submitted,
                "completed": self.completed,
                "failed": self.failed,
                "errors": self.errors,
                "cancelled": self.cancelled,
                "in_flight": self.submitted - done,
                "batches": self.batches,
                "batch_sizes": {str(k): n for k, n in enumerate(self.batch_sizes) if n},
                "latency": {name: r.summary() for name, r in self._lat.items()},
            }


class LazyJSON:
    """Formats a snapshot only if a log record is actually emitted."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __str__(self) -> str:
        return json.dumps(self._fn(), separators=(",", ":"))
