"""The batching engine: many producers, a few decoders, one inference thread.

eKuiper calls one function symbol strictly one at a time, so concurrency pays
only when one call carries many frames (``labelImages`` over a window) or when
several symbols run at once. The engine serves both:

    submit() --jobs--> decoder threads --ready--> inference thread --> Future
                       (decode + resize into       (coalesces up to max_batch,
                        a preallocated slot)        one invoke or one per frame)

- Decoders (``workers``) run simplejpeg and the C resize, which release the GIL,
  so decoding overlaps inference. Each frame is resized into one slot of a ring
  allocated once, so steady state allocates nothing frame-sized beyond what the
  JPEG decoder returns. A decoder waits for a free slot: that is the only
  back-pressure, and it never blocks ``submit``.
- The inference thread is the only one that touches an interpreter. With the
  classifier's own batch-1 model it holds ``classifier._lock`` per invoke, so the
  direct ``Classifier.label`` path interleaves with it. With a batch-rewritten
  model (``batch_mode``) it owns that model outright.
- A frame submitted while the engine is idle skips the decoders: the inference
  thread decodes it and resizes it straight into the input tensor, exactly the
  work of ``Classifier.label`` plus one hand-off each way, so a lone frame pays
  no batching latency.
- Frames that arrive together (``submit_many``: a window, ``label_many``) all
  go to the decoders, and the inference thread decodes queued frames itself
  instead of idling, so a window is decoded on every core first and then run
  as one batch. On 2 cores this beats overlapping decode with inference: an
  XNNPACK invoke on all cores stalls whenever a decoder takes one of them.
- Coalescing: the inference thread takes whatever is ready, up to ``max_batch``;
  while more frames are still being decoded by the workers it waits for them,
  idle for at most ``max_queue_delay_ms`` in all. In loop mode it never waits:
  one invoke per frame gains nothing from waiting.
- ``close()`` lets every accepted frame finish, then stops the threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import List, Optional, Protocol, Sequence

import numpy as np

from .batching import BatchedModel, resolve_batch_mode
from .config import Config
from .crop import Box, Crop
from .errors import BadInput, ClosedError, ModelError, drop_tracebacks
from .labels import Result
from .model import Model
from .source import ImageInput
from .stats import EngineStats, LazyJSON

log = logging.getLogger(__name__)

_now = time.perf_counter


class Stages(Protocol):
    """The one-frame stages the engine runs each frame through (a ``Classifier``
    has them): bytes -> frame (``decode``) -> tensor (``fill``) -> scores
    (``model.run``) -> labels (``results``). The engine calls them and never
    imports the classifier, which owns it: the data flows one way."""

    config: Config
    model: Model
    # Its views of a frame (crop_mode=squares: several, each a slot and a batch row).
    crop: Crop
    # Held around each fill + invoke of ``model`` (batch 1), which the direct
    # one-frame calls share with the engine's inference thread.
    _lock: threading.Lock

    def decode(self, image: ImageInput, reuse: bool = False, split: bool = False) -> np.ndarray: ...

    def fill(self, frame: np.ndarray, slot: np.ndarray, crop: Optional[Crop] = None,
             box: Optional[Box] = None) -> None: ...

    def results(self, raw: np.ndarray, k: Optional[int] = None, min_confidence: Optional[float] = None) -> Result: ...

    # A frame of several views: the direct path labels it whole, the batch paths merge its rows.
    def label_frame(self, frame: np.ndarray, top_k: Optional[int] = None,
                    min_confidence: Optional[float] = None) -> Result: ...

    def merge_views(self, probs: np.ndarray) -> np.ndarray: ...


class _Job:
    __slots__ = ("image", "future", "top_k", "min_confidence", "t_submit", "t_ready", "waited", "slot", "more",
                 "direct")

    def __init__(self, image: ImageInput, top_k: Optional[int], min_confidence: Optional[float], direct: bool):
        self.image: Optional[ImageInput] = image
        self.future: Future = Future()
        self.top_k = top_k
        self.min_confidence = min_confidence
        self.direct = direct  # decoded by the inference thread itself
        self.t_submit = _now()
        self.t_ready = 0.0  # when its slot was filled
        self.waited = 0.0  # submit -> decode start
        self.slot = -1
        self.more: List[int] = []  # the slots of its other views (crop_mode=squares)

    @property
    def slots(self) -> List[int]:
        return [self.slot, *self.more] if self.slot >= 0 else []


class Engine:
    """Decode/resize pool plus a single inference thread over one classifier.

    Thread-safe; a context manager. Keyword arguments override the classifier's
    config (the tuning sweep uses them).
    """

    def __init__(
        self,
        classifier: Stages,
        *,
        workers: Optional[int] = None,
        max_batch: Optional[int] = None,
        max_queue_delay_ms: Optional[float] = None,
        batch_mode: Optional[str] = None,
        stats_log_interval_s: Optional[float] = None,
    ):
        cfg = classifier.config
        self._clf = classifier
        self.workers = workers if workers is not None else cfg.workers
        self.max_batch = max_batch if max_batch is not None else cfg.max_batch
        delay_ms = max_queue_delay_ms if max_queue_delay_ms is not None else cfg.max_queue_delay_ms
        requested = batch_mode if batch_mode is not None else cfg.batch_mode
        interval = stats_log_interval_s if stats_log_interval_s is not None else cfg.stats_log_interval_s
        if self.workers < 1 or self.max_batch < 1 or delay_ms < 0:
            raise ModelError("engine needs workers >= 1, max_batch >= 1 and max_queue_delay_ms >= 0")
        if requested not in ("auto", "native", "loop"):
            raise ModelError(f"batch_mode must be auto, native or loop, got {requested!r}")

        # crop_mode=squares: each frame is several views, each its own slot and batch row.
        crop = classifier.crop
        self._views = crop.squares + crop.whole if crop.mode == "squares" else 1
        self._batched: Optional[BatchedModel] = None
        self.batch_mode = "loop"
        if self.max_batch > 1 and resolve_batch_mode(requested, cfg.model, cfg.interpreter_threads) == "native":
            try:
                # The classifier's bytes: the file may have been replaced since it loaded.
                self._batched = BatchedModel(cfg.model, cfg.interpreter_threads, self.max_batch * self._views,
                                             content=classifier.model.content)
                self.batch_mode = "native"
            except ModelError as exc:
                # Still correct, just one invoke per frame.
                log.warning("pyai engine: batch inference unavailable, one invoke per frame: %s", exc)
        # Waiting for more frames only pays when they share one invoke.
        self._delay = delay_ms / 1000.0 if self._batched is not None else 0.0

        spec = classifier.model.input
        # Enough for a full batch being copied in, the next one filling, and every decoder busy.
        self._slots = np.zeros(((2 * self.max_batch + self.workers) * self._views, spec.height, spec.width, 3),
                               dtype=spec.dtype)
        self._free: "queue.SimpleQueue[int]" = queue.SimpleQueue()
        for i in range(len(self._slots)):
            self._free.put(i)
        self._jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
        self._ready: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()

        self._lock = threading.Lock()
        self._closed = False
        self._unfinished = 0  # accepted, Future not yet resolved
        self._undecoded = 0  # handed to the decoders, not yet ready or failed
        self._live_workers = self.workers
        self._stats = EngineStats(self.max_batch)
        self._log_interval = interval
        self._next_log = time.monotonic() + interval

        self._threads = [
            threading.Thread(target=self._decode_loop, name=f"pyai-decode-{i}", daemon=True)
            for i in range(self.workers)
        ]
        self._threads.append(threading.Thread(target=self._infer_loop, name="pyai-infer", daemon=True))
        for t in self._threads:
            t.start()
        log.info(
            "pyai engine started: batch_mode=%s (asked %s), workers=%d, max_batch=%d, "
            "max_queue_delay_ms=%s, threads=%d",
            self.batch_mode, requested, self.workers, self.max_batch, delay_ms, cfg.interpreter_threads,
        )

    # -- producers -------------------------------------------------------------------

    def submit(
        self, image: ImageInput, top_k: Optional[int] = None, min_confidence: Optional[float] = None
    ) -> Future:
        """Queue one image (raw bytes or base64 text); returns a Future of its result list.

        The Future raises BadInput for a frame that cannot be labelled. Raises
        ClosedError once :meth:`close` has been called.
        """
        with self._lock:
            if self._closed:
                raise ClosedError("pyai engine is closed: it accepts no more frames (create a new Classifier)")
            direct = self._unfinished == 0
            job = _Job(image, top_k, min_confidence, direct)
            self._unfinished += 1
            # Enqueued under the lock so no job can land behind close()'s stop markers.
            if direct:
                self._ready.put(job)
            else:
                self._undecoded += 1
                self._jobs.put(job)
        self._stats.on_submit()
        return job.future

    def submit_many(
        self, images: Sequence[ImageInput], top_k: Optional[int] = None, min_confidence: Optional[float] = None
    ) -> List[Future]:
        """Queue frames that arrived together (a window); one Future each, in order.

        Unlike a run of :meth:`submit` calls, none of them takes the lone-frame
        path: they are decoded in parallel and then share batches.
        """
        images = list(images)
        if len(images) < 2:
            return [self.submit(image, top_k, min_confidence) for image in images]
        with self._lock:
            if self._closed:
                raise ClosedError("pyai engine is closed: it accepts no more frames (create a new Classifier)")
            jobs = [_Job(image, top_k, min_confidence, False) for image in images]
            self._unfinished += len(jobs)
            self._undecoded += len(jobs)
            for job in jobs:
                self._jobs.put(job)
        for _ in jobs:
            self._stats.on_submit()
        return [job.future for job in jobs]

    def stats(self) -> dict:
        """Counters, batch-size histogram and latency percentiles, JSON-able."""
        snap = self._stats.snapshot()
        snap.update(
            batch_mode=self.batch_mode,
            workers=self.workers,
            max_batch=self.max_batch,
            max_queue_delay_ms=self._delay * 1000.0,
            closed=self._closed,
        )
        return snap

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: Optional[float] = None) -> None:
        """Finish every accepted frame, then stop the threads. Idempotent."""
        with self._lock:
            first = not self._closed
            self._closed = True
            if first:
                for _ in range(self.workers):
                    self._jobs.put(None)
        if threading.current_thread() in self._threads:
            # Called from a Future callback on one of our threads: it cannot wait
            # for itself; the stop markers are queued and the threads will finish.
            return
        for t in self._threads:
            t.join(timeout)
        if first:
            log.info("pyai engine stopped: %s", LazyJSON(self._stats.snapshot))

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolving Futures (every accepted job ends in exactly one of these) ---------------

    def _settle(self) -> None:
        # Before the Future wakes its caller, so a caller that submits again at
        # once finds the engine idle and takes the direct path.
        with self._lock:
            self._unfinished -= 1

    def _start(self, job: _Job) -> bool:
        """Mark the job running; False (and accounted) if its caller cancelled it."""
        if job.future.set_running_or_notify_cancel():
            return True
        self._stats.on_cancelled()
        self._settle()
        return False

    def _fail(self, job: _Job, exc: BaseException) -> None:
        expected = isinstance(exc, BadInput)
        if not expected:
            log.warning("pyai engine: a frame failed unexpectedly: %s", exc, exc_info=exc)
        self._stats.on_failed(expected)
        self._settle()
        # Without tracebacks: the worker's frame holds ``job``, which holds this future,
        # a reference cycle only the cyclic GC frees, and with it the frame's request
        # bytes and buffers (megabytes a hostile window: the soak's RSS swing).
        job.image = None
        job.future.set_exception(drop_tracebacks(exc))

    def _finish(self, job: _Job, result: list, t_infer: float) -> None:
        """Deliver a result; ``t_infer`` is when its inference started."""
        self._stats.on_done(job.waited + max(0.0, t_infer - job.t_ready), _now() - job.t_submit)
        self._settle()
        job.future.set_result(result)

    # -- decoders ----------------------------------------------------------------------

    def _decode_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            self._decode_counted(job)
        with self._lock:
            self._live_workers -= 1
            last = self._live_workers == 0
        if last:
            # Every job is now ready or resolved: the inference thread stops after the rest.
            self._ready.put(None)

    def _decode_counted(self, job: _Job, reserved: Optional[List[int]] = None) -> None:
        try:
            self._decode_one(job, reserved or [])
        finally:
            with self._lock:
                self._undecoded -= 1

    def _decode_one(self, job: _Job, reserved: List[int]) -> None:
        """Decode and resize each view into a slot: the ``reserved`` ones first, then
        wait for free ones (never on the inference thread: it reserves every slot a
        frame may need)."""
        if not self._start(job):
            self._release(reserved)
            return
        clf = self._clf
        t0 = _now()
        slots = reserved
        try:
            # The frame lives in this thread's scratch buffer only until fill() below.
            frame = clf.decode(job.image, reuse=True)
            job.image = None  # the caller's encoded bytes are no longer needed
            views = clf.crop.views(frame.shape[1], frame.shape[0], clf.model.input_size)
            self._release(slots[len(views):])
            slots = slots[:len(views)]
            while len(slots) < len(views):
                slots.append(self._free.get())
            if len(views) == 1:
                clf.fill(frame, self._slots[slots[0]])
            else:
                for slot, box in zip(slots, views):
                    clf.fill(frame, self._slots[slot], box=box)
        except BaseException as exc:
            self._release(slots)
            if not isinstance(exc, Exception):
                raise
            self._fail(job, exc)  # one frame's failure must not stop the decoder
            return
        t1 = _now()
        self._stats.on_decoded(t1 - t0)
        job.waited = t0 - job.t_submit
        job.t_ready = t1
        job.slot, job.more = slots[0], slots[1:]
        self._ready.put(job)

    # -- the inference thread -------------------------------------------------------------

    def _infer_loop(self) -> None:
        stop = False
        while True:
            if stop:
                # The last decoder has stopped, but a frame this thread decoded
                # while helping may sit behind the marker: run what is left.
                try:
                    job = self._ready.get_nowait()
                except queue.Empty:
                    break
            else:
                job = self._ready.get()
            if job is None:
                stop = True
                continue
            if job.direct:
                self._run_direct(job)
                self._maybe_log()
                continue
            batch = [job]
            stop = self._collect(batch) or stop
            try:
                if self._batched is not None and len(batch) > 1:
                    self._run_batched(batch)
                else:
                    self._run_loop(batch)
            except Exception as exc:  # noqa: BLE001 - the inference thread must survive anything
                for j in batch:
                    self._release(j.slots)
                    j.slot, j.more = -1, []
                    if not j.future.done():
                        self._fail(j, exc)
            self._maybe_log()

    def _collect(self, batch: List[_Job]) -> bool:
        """Add ready frames to ``batch``; True when the stop marker was seen."""
        idle_left = self._delay
        while len(batch) < self.max_batch:
            try:
                job = self._ready.get_nowait()
            except queue.Empty:
                # Wait only while frames are still being decoded: with nothing
                # on its way, waiting would be pure latency.
                if self._delay <= 0 or self._undecoded == 0:
                    return False
                if self._help_decode():
                    continue
                if idle_left <= 0:
                    return False
                t0 = _now()
                try:
                    job = self._ready.get(timeout=idle_left)
                except queue.Empty:
                    return False
                finally:
                    idle_left -= _now() - t0
            if job is None:
                return True
            if job.direct:
                # Only submitted while the engine was idle, so not normally seen here.
                self._run_direct(job)
                continue
            batch.append(job)
        return False

    def _help_decode(self) -> bool:
        """Decode one queued frame on this thread instead of idling; False if none is queued."""
        # Reserve the slots first: only this thread frees slots, so it must never
        # wait for one (the decoders may have filled every slot meanwhile).
        reserved: List[int] = []
        try:
            while len(reserved) < self._views:
                reserved.append(self._free.get_nowait())
        except queue.Empty:
            self._release(reserved)
            return False
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            self._release(reserved)
            return False
        if job is None:
            # A decoder's stop marker: every job was queued before it, so none is left.
            self._jobs.put(None)
            self._release(reserved)
            return False
        self._decode_counted(job, reserved)
        return True

    def _release(self, slots: List[int]) -> None:
        for slot in slots:
            if slot >= 0:
                self._free.put(slot)

    def _run_direct(self, job: _Job) -> None:
        """A frame that arrived while idle: decode here and resize straight into the tensor."""
        if not self._start(job):
            return
        clf = self._clf
        model = clf.model
        t0 = _now()
        try:
            # The engine is idle, so the other cores are free for this frame's rows.
            frame = clf.decode(job.image, reuse=True, split=True)
            job.image = None
            t_decoded = _now()
            if self._views > 1:  # its views' resizes and their batch, under the classifier's lock
                t1 = t2 = t_decoded
                result = clf.label_frame(frame, job.top_k, job.min_confidence)
                t3 = _now()
            else:
                with clf._lock:
                    t1 = _now()
                    clf.fill(frame, model.input_slot(0))
                    t2 = _now()
                    raw = model.run()[0]
                    t3 = _now()
                    result = clf.results(raw, job.top_k, job.min_confidence)
        except Exception as exc:  # noqa: BLE001 - the inference thread must survive anything
            self._fail(job, exc)
            return
        # Decode plus resize, without any wait for the lock in between.
        self._stats.on_decoded(t2 - t0 - (t1 - t_decoded))
        self._stats.on_batch(1, t3 - t2)
        job.waited = t0 - job.t_submit
        job.t_ready = t2
        self._finish(job, result, t2)

    def _run_loop(self, batch: List[_Job]) -> None:
        clf = self._clf
        model = clf.model
        for job in batch:
            with clf._lock:
                t0 = _now()
                rows = []
                for slot in job.slots:
                    np.copyto(model.input_slot(0), self._slots[slot])
                    raw = model.run()[0]
                    rows.append(raw if not job.more else model.dequantize(raw))
                self._release(job.slots)
                job.slot, job.more = -1, []
                raw = rows[0] if len(rows) == 1 else clf.merge_views(np.stack(rows))
                dt = _now() - t0
                result = clf.results(raw, job.top_k, job.min_confidence)
            self._stats.on_batch(1, dt)
            self._finish(job, result, t0)

    def _run_batched(self, batch: List[_Job]) -> None:
        model = self._batched
        assert model is not None
        t0 = _now()
        model.set_batch(sum(len(job.slots) for job in batch))
        inp = model.input_tensor
        rows: List[slice] = []
        i = 0
        for job in batch:
            for slot in job.slots:
                np.copyto(inp[i], self._slots[slot])
                i += 1
            rows.append(slice(i - len(job.slots), i))
            self._release(job.slots)
            job.slot, job.more = -1, []
        raw = model.run()
        dt = _now() - t0
        self._stats.on_batch(len(batch), dt)
        clf = self._clf
        for job, r in zip(batch, rows):
            one = raw[r.start] if r.stop - r.start == 1 else clf.merge_views(model.dequantize(raw[r]))
            self._finish(job, clf.results(one, job.top_k, job.min_confidence), t0)

    def _maybe_log(self) -> None:
        if self._log_interval <= 0:
            return
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + self._log_interval
            log.info("pyai engine stats: %s", LazyJSON(self.stats))
