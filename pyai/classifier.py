"""The plain Python API: bytes -> decoded frame -> tensor -> scores -> labels.

>>> from pyai import Classifier
>>> with Classifier(model="models/tf2_mobilenet_v2_1.0_224_ptq.tflite",
...                 labels="models/imagenet_labels.txt") as clf:
...     clf.label(open("cat.jpg", "rb").read())[0]
{'confidence': 0.52, 'label': '286:Egyptian cat'}
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterable, List, Tuple

import numpy as np

from .config import Config, load_config
from .crop import Box, Crop
from .decode import Header, Limits, check, decode, inspect, jpeg_splitter
from .gate import Gate, Plan, jpeg_signature, margin, signature, source_box, walker_available, walker_stats
from .labels import Result, load_labels, top_k
from .model import Model
from .resize import resize_into
from .source import ImageInput, to_bytes
from .split_policy import SplitPolicy


# The call site of API callers that do not name one.
DEFAULT_SITE = "api"


class Classifier:
    """A model and its labels, loaded once; ``label()`` is safe to call from any thread.

    Options mirror MediaPipe's ImageClassifier: ``top_k`` (max_results) and
    ``min_confidence`` (score_threshold) are defaults that each call may override.
    """

    def __init__(self, config: Config | None = None, **overrides: Any):
        cfg = config if config is not None else load_config()
        if overrides:
            cfg = cfg.replace(**overrides)
        self.config = cfg
        self.model = Model(cfg.model, cfg.interpreter_threads)
        # A lone frame with threads and decode_threads left to pyai (0): split over
        # the cores or run on one, whichever the calls show faster (pyai/split_policy.py).
        self.one_core: Model | None = None
        self.split_policy: SplitPolicy | None = None
        if cfg.threads == 0 and cfg.decode_threads == 0 and self.model.threads > 1:
            self.one_core = Model(cfg.model, 1)
            self.split_policy = SplitPolicy()
        self.labels = load_labels(cfg.labels, self.model.num_classes)
        self.limits = Limits(max_pixels=cfg.max_pixels, max_decode_ms=cfg.max_decode_ms)
        self.crop = cfg.crop
        # The whole frame's decode size (the bench reports it); frames are decoded
        # at decode_size_for(their size), which also covers a crop's region.
        self.decode_size = cfg.decode_size(self.model.input_size)
        # One frame at a time (labelImage, label()): its JPEG rows are split over
        # the cores that would otherwise idle while it decodes.
        self.splitter = jpeg_splitter(cfg.jpeg_decode_threads)
        self._lock = threading.Lock()
        self._engine = None
        self._engine_lock = threading.Lock()
        # The unchanged-frame gate (skip_unchanged); None keeps today's path untouched.
        self.gate = Gate(cfg.skip_unchanged, cfg.skip_unchanged_margin) if cfg.skip_unchanged > 0 else None
        # Signatures in grey levels whatever the input type; margins in confidence units.
        self._signature_scale = cfg.std if self.model.input.dtype == np.float32 else 1.0
        self._margin_scale = 1.0 if self.model.output_dtype == np.float32 else self.model.output_scale
        # The DC walk runs instead of the split decoder, on the same cores.
        self._walk_threads = max(1, cfg.jpeg_decode_threads)
        self.warm_up()

    def warm_up(self) -> None:
        """Run once on a blank frame so the first real call does not pay delegate set-up."""
        with self._lock:
            for model in (self.model, self.one_core):
                if model is not None:
                    model.input_tensor[...] = 0
                    model.run()

    # -- stages, usable one by one (the engine and the bench call them) --------

    def decode(self, image: ImageInput, reuse: bool = False, split: bool = False) -> np.ndarray:
        """Stages 1-2: caller's input (raw bytes or base64 text) -> RGB frame (``reuse``, ``split`` as below)."""
        return self.decode_bytes(to_bytes(image, self.config.max_encoded_bytes), reuse, split)

    def decode_bytes(
        self, data: bytes | memoryview, reuse: bool = False, split: bool = False, *, crop: Crop | None = None,
        header: Header | None = None,
    ) -> np.ndarray:
        """Stage 2: encoded image bytes -> RGB frame whose crop region (``crop``, default
        the config's) covers the model's input.

        ``reuse`` decodes into a per-thread scratch buffer: the frame is then only
        valid until this thread's next ``reuse`` decode (fine for decode-then-fill).
        ``split`` decodes a JPEG on ``decode_threads`` cores (same pixels); the
        batching engine asks for it only for a lone frame (a window's frames are
        already decoded in parallel, one per core).
        """
        size = self.decode_size_for if crop is None else (lambda w, h: self.decode_size_for(w, h, crop))
        return decode(data, size, self.limits, reuse, self.splitter if split else None, header)

    def decode_size_for(self, width: int, height: int, crop: Crop | None = None) -> Tuple[int, int]:
        """The smallest (width, height) a ``width`` x ``height`` image may be decoded
        to: its crop region (``crop``, default the config's) then still covers
        ``decode_oversample`` x the model input (so the JPEG DCT scale is chosen on
        the region, not the whole frame)."""
        crop = self.crop if crop is None else crop
        if crop.whole_frame:
            return self.decode_size
        return crop.decode_size(width, height, self.model.input_size, self.config.decode_oversample)

    def crop_box(self, frame: np.ndarray, crop: Crop | None = None) -> Box | None:
        """The region of ``frame`` the model sees, (x0, y0, x1, y1) in its pixels (None: all of it)."""
        return (self.crop if crop is None else crop).box(frame.shape[1], frame.shape[0], self.model.input_size)

    def signature_box(self, width: int, height: int, crop: Crop | None = None) -> Tuple[int, int, int, int]:
        """The region the gate's JPEG signature covers: the model's crop region
        (``crop``, default the config's) of a ``width`` x ``height`` frame, in whole
        pixels of the source."""
        region = (self.crop if crop is None else crop).box(width, height, self.model.input_size)
        return source_box(width, height, region)

    def fill(self, frame: np.ndarray, slot: np.ndarray, crop: Crop | None = None) -> None:
        """Stage 3: resize ``frame``'s crop region (``crop``, default the config's)
        straight into ``slot`` (a view of an input tensor)."""
        resize_into(frame, slot, mean=self.config.mean, std=self.config.std, box=self.crop_box(frame, crop))

    def results(self, raw: np.ndarray, k: int | None = None, min_confidence: float | None = None) -> Result:
        """Stage 5: one row of raw scores -> top-k list."""
        return top_k(
            raw,
            self.labels,
            self.config.top_k if k is None else k,
            self.model.output_scale,
            self.model.output_zero_point if self.model.output_dtype != np.float32 else 0,
            self.config.min_confidence if min_confidence is None else min_confidence,
        )

    # -- one frame ----------------------------------------------------------------

    def label(
        self,
        image: ImageInput,
        top_k: int | None = None,
        min_confidence: float | None = None,
        site: str = DEFAULT_SITE,
        *,
        crop: Crop | None = None,
    ) -> Result:
        """Top-k labels of one image (raw bytes or base64 text), best first.

        ``site`` names the caller for the unchanged-frame gate (``skip_unchanged``):
        a frame is only ever compared with the last frame run for the same site, so
        give each camera its own. ``crop`` (a ``pyai.Crop``) is this call's region of
        interest instead of the config's, like MediaPipe's per-call
        region_of_interest. Raises BadInput with a one-line reason when the image
        cannot be used.
        """
        data = to_bytes(image, self.config.max_encoded_bytes)
        return self.label_bytes(data, site, top_k, min_confidence, crop=crop)

    def label_bytes(
        self, data: bytes | memoryview, site: str = DEFAULT_SITE, top_k: int | None = None,
        min_confidence: float | None = None, *, crop: Crop | None = None,
    ) -> Result:
        """Top-k labels of one encoded image (``label`` once its bytes are known):
        through the unchanged-frame gate at ``site`` when it is on."""
        gate = self.gate
        if gate is None:
            policy = self.split_policy
            if policy is None:
                frame = self.decode_bytes(data, reuse=True, split=True, crop=crop)
                return self.label_frame(frame, top_k, min_confidence, crop=crop)
            split = policy.choose()
            t0 = time.perf_counter()
            frame = self.decode_bytes(data, reuse=True, split=split, crop=crop)
            result = self._label_on(self.model if split else self.one_core, frame, top_k, min_confidence, crop)
            policy.record(split, time.perf_counter() - t0)
            return result
        header = inspect(data)
        check(header, self.limits)
        if header.kind == "jpeg":
            plan = gate.plan(site, "jpeg")
            scores = None
            try:
                if plan.walk:
                    scores = self._jpeg_gate(gate, plan, data, header, crop)
            except NotImplementedError:
                pass  # a JPEG the walker does not read: the tensor's signature below
            else:
                if scores is not None:
                    return self.results(scores, top_k, min_confidence)
                frame = self.decode_bytes(data, reuse=True, split=True, crop=crop, header=header)
                with self._lock:
                    self.fill(frame, self.model.input_slot(0), crop)
                    raw = self.model.run()[0]
                    gate.store(plan, raw, margin(raw, self._margin_scale))
                    return self.results(raw, top_k, min_confidence)
        frame = self.decode_bytes(data, reuse=True, split=True, crop=crop, header=header)
        return self.label_gated(frame, site, top_k, min_confidence, crop=crop)

    def _jpeg_gate(self, gate: Gate, plan: Plan, data: bytes | memoryview, header: Header,
                   crop: Crop | None) -> np.ndarray | None:
        """The JPEG's signature from its DC coefficients, checked at ``plan``'s site:
        the reused scores, or None."""
        try:
            sig = jpeg_signature(data, self.signature_box(header.width, header.height, crop), plan.ref,
                                 gate.threshold, self._walk_threads)
        except ValueError:
            # Corrupt by the walker's strict rules: never a reused answer. The
            # decoder has the last word (and the error message).
            sig = None
        return gate.decide(plan, sig)

    def label_gated(
        self, frame: np.ndarray, site: str, top_k: int | None = None, min_confidence: float | None = None,
        *, crop: Crop | None = None,
    ) -> Result:
        """Top-k labels of one decoded frame through the gate: the scores of the
        site's last run frame if this one looks the same, else a run (remembered)."""
        gate = self.gate
        if gate is None:
            return self.label_frame(frame, top_k, min_confidence, crop=crop)
        model = self.model
        with self._lock:
            tensor = model.input_slot(0)
            self.fill(frame, tensor, crop)
            # From the tensor the resize just wrote (in cache), which a changed frame
            # goes on to run with: the check costs a changed frame only the sampling.
            # The tensor is of the crop region, so a different crop is a different frame.
            plan, scores = gate.consult(site, "tensor", lambda ref, thr: signature(tensor, self._signature_scale))
            if scores is None:
                scores = model.run()[0]
                gate.store(plan, scores, margin(scores, self._margin_scale))
            return self.results(scores, top_k, min_confidence)

    def label_frame(
        self, frame: np.ndarray, top_k: int | None = None, min_confidence: float | None = None,
        *, crop: Crop | None = None,
    ) -> Result:
        """Top-k labels of one decoded RGB frame (any size), of its ``crop`` region
        (default the config's)."""
        return self._label_on(self.model, frame, top_k, min_confidence, crop)

    def _label_on(self, model: Model, frame: np.ndarray, top_k: int | None, min_confidence: float | None,
                  crop: Crop | None) -> Result:
        with self._lock:
            self.fill(frame, model.input_slot(0), crop)
            raw = model.run()[0]
            return self.results(raw, top_k, min_confidence)

    # -- many frames: the batching engine ------------------------------------------

    @property
    def engine(self):
        """The batching engine, started on first use (shares this classifier's model)."""
        with self._engine_lock:
            if self._engine is None:
                from .engine import Engine

                self._engine = Engine(self)
            return self._engine

    def submit(self, image: ImageInput):
        """Queue one image; returns a Future of its result list."""
        return self.engine.submit(image)

    def submit_many(self, images: Iterable[ImageInput]) -> list:
        """Queue images that arrived together (decoded in parallel, then batched); Futures in order."""
        return self.engine.submit_many(list(images))

    def label_many(self, images: Iterable[ImageInput], site: str = DEFAULT_SITE) -> List[Result]:
        """Label many images through the batching engine; raises on the first bad one.

        With the gate on, the frames go through it one by one, in order, at ``site``
        (a window of a fixed camera is mostly one frame: most are answered by it).
        """
        if self.gate is not None:
            return [self.label(image, site=site) for image in images]
        return [f.result() for f in self.submit_many(images)]

    def describe(self) -> dict:
        """The model's description and how JPEG frames are decoded."""
        desc = self.model.describe()
        if self.splitter is not None:
            desc["jpeg_decoder"] = f"native_jpeg, {self.splitter.stats()['threads']} threads"
        else:
            desc["jpeg_decoder"] = "simplejpeg"
        if self.split_policy is not None:
            desc["lone_frame"] = self.split_policy.stats()
        # Where skip_unchanged takes a JPEG frame's signature from (when it is on).
        desc["gate_signature"] = "native_dcsig" if walker_available() else "input tensor"
        return desc

    def stats(self) -> dict:
        return self._engine.stats() if self._engine is not None else {}

    def gate_stats(self) -> dict:
        """The gate's counters (checked, reused, run), in all and per call site, and the
        JPEG walker's (``walks``: walks, on two cores, stopped early); {} when off."""
        if self.gate is None:
            return {}
        out = self.gate.stats()
        out["walks"] = walker_stats()
        return out

    def close(self) -> None:
        """Finish every accepted frame, then stop the engine's threads and the
        split decoder's helpers (later calls decode in one piece)."""
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
        self.splitter = None

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
