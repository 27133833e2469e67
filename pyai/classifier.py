"""The plain Python API: bytes -> decoded frame -> tensor -> scores -> labels.

>>> from pyai import Classifier
>>> with Classifier(model="models/tf2_mobilenet_v2_1.0_224_ptq.tflite",
...                 labels="models/imagenet_labels.txt") as clf:
...     clf.label(open("cat.jpg", "rb").read())[0]
{'confidence': 0.52, 'label': '286:Egyptian cat'}
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, List, Tuple

import numpy as np

from .batching import BatchedModel, BatchRewriteError
from .config import Config, load_config
from .crop import Box, Crop
from .decode import Header, Limits, check, decode, inspect, jpeg_splitter
from .gate import Gate, source_box, top2, walker_available, walker_stats
from .gatekeeper import Gatekeeper, Peek
from .labels import Result
from .merge import merge_scores
from .model import Model
from .model_card import fill as fill_input
from .model_card import pixels_into
from .model_card import resolve
from .parallel_views import ParallelViews
from .source import ImageInput, to_bytes

if TYPE_CHECKING:
    from .engine import Engine


log = logging.getLogger(__name__)

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
        self.model = Model(cfg.model, cfg.interpreter_threads)
        # Labels, normalisation and score kind: config > the model's metadata > its graph.
        self.card = resolve(cfg, self.model, self.model.content)
        self.labels = self.card.labels
        norm = self.card.norm
        # The config as it applies: mean/std as the resize uses them (from the metadata
        # where the config left them unset; per-channel maps stay in card.norm alone).
        if norm.fast:
            cfg = cfg.replace(mean=norm.scalar_mean, std=norm.scalar_std)
        # ... and the score floor the model's metadata sets where the config sets none.
        cfg = cfg.replace(min_confidence=self.card.min_confidence)
        self.config = cfg
        self.limits = Limits(max_pixels=cfg.max_pixels, max_decode_ms=cfg.max_decode_ms)
        self.crop = cfg.crop
        # The whole frame's decode size (the bench reports it); frames are decoded
        # at decode_size_for(their size), which also covers a crop's region.
        self.decode_size = cfg.decode_size(self.model.input_size)
        # One frame at a time (labelImage, label()): its JPEG rows are split over
        # the cores that would otherwise idle while it decodes.
        self.splitter = jpeg_splitter(cfg.jpeg_decode_threads)
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        # The unchanged-frame gate (skip_unchanged); None keeps today's path untouched.
        self.gate = (Gate(cfg.skip_unchanged, cfg.skip_unchanged_margin, check_every=cfg.skip_unchanged_check_every)
                     if cfg.skip_unchanged > 0 else None)
        self.gatekeeper = None if self.gate is None else Gatekeeper(
            self.gate, walk_threads=max(1, cfg.jpeg_decode_threads),
            signature_scale=(cfg.std or 1.0) if self.model.input.dtype == np.float32 else 1.0,
            rank=self.rank)
        # crop_mode=squares: the batch-rewritten model its squares run on, made on first use.
        self._views_model: Any = None
        # ... or, with several interpreter threads, one one-thread interpreter per core,
        # a view on each (pyai/parallel_views.py); made at start, used by every frame.
        self._parallel_views: ParallelViews | None = None
        lanes = min(cfg.interpreter_threads, self.crop.most_views)
        if lanes > 1 and cfg.batch_mode != "loop":
            self._parallel_views = ParallelViews(cfg.model, self.model.content, lanes)
        self.warm_up()

    def warm_up(self) -> None:
        """Run once on a blank frame so the first real call does not pay delegate set-up."""
        with self._lock:
            self.model.input_tensor[...] = 0
            self.model.run()

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

    def fill(self, frame: np.ndarray, slot: np.ndarray, crop: Crop | None = None, box: Box | None = None) -> None:
        """Stage 3: resize ``frame``'s crop region (``crop``, default the config's;
        or ``box``, one of its views) straight into ``slot`` (a view of an input tensor)."""
        crop = self.crop if crop is None else crop
        if box is None:
            box = self.crop_box(frame, crop)
        norm = self.card.norm
        place = crop.placement(frame.shape[1], frame.shape[0], self.model.input_size)
        if place is None:
            fill_input(norm, frame, slot, box)
            return
        # Letterbox: mid-grey around the region, normalised as a pixel of it would be.
        pixels_into(norm, np.full(slot.shape, 128, np.uint8), slot)
        x0, y0, w, h = place
        if w == slot.shape[1]:  # whole rows: a contiguous view of the slot
            fill_input(norm, frame, slot[y0:y0 + h], box)
        else:
            part = np.empty((h, w, 3), slot.dtype)
            fill_input(norm, frame, part, box)
            slot[y0:y0 + h, x0:x0 + w] = part

    def results(self, raw: np.ndarray, k: int | None = None, min_confidence: float | None = None) -> Result:
        """Stage 5: one row of raw scores -> top-k list."""
        return self.card.scores.top_k(
            raw,
            self.labels,
            self.config.top_k if k is None else k,
            self.config.min_confidence if min_confidence is None else min_confidence,
        )

    def rank(self, raw: np.ndarray) -> Tuple[int, int, float]:
        """One row of raw scores -> (top-1 class, runner-up, the top-1's lead in
        confidence), in ``results``' order (ties: the lower index first)."""
        conf = self.card.scores.confidences(raw.reshape(-1))
        best, runner_up = top2(conf)
        return best, runner_up, float(conf[best] - conf[runner_up]) if runner_up >= 0 else float("inf")

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
        # A lone frame's JPEG rows are split over the cores only when it has one view:
        # several views already use those cores, and the split's helper would cost
        # CPU (1.9 ms a frame of two views on the 2-core VM) for no gain in time.
        split = (self.crop if crop is None else crop).most_views == 1
        if self.gatekeeper is None:
            frame = self.decode_bytes(data, reuse=True, split=split, crop=crop)
            return self.label_frame(frame, top_k, min_confidence, crop=crop)
        header = inspect(data)
        check(header, self.limits)
        scores = self.gatekeeper.scores(
            site, data, header.kind, self.signature_box(header.width, header.height, crop),
            decode=lambda: self.decode_bytes(data, reuse=True, split=split, crop=crop, header=header),
            infer=lambda frame, peek: self._infer(frame, crop, peek))
        return self.results(scores, top_k, min_confidence)

    def _infer(self, frame: np.ndarray, crop: Crop | None, peek: Peek | None = None) -> np.ndarray:
        """Stages 3-4 for the gate: fill the input tensor, let ``peek`` answer from it
        if it can, else run; a copy of the raw scores (the next run overwrites them)."""
        with self._lock:
            if peek is None:
                # No signature wanted from the tensor (a JPEG's came from its DC walk):
                # each view is filled where it runs (filling the region around every
                # view first cost a frame of several views a whole resize for nothing).
                return np.array(self.infer(frame, crop), copy=True)
            tensor = self.model.input_slot(0)
            self.fill(frame, tensor, crop)
            reused = peek(tensor)
            if reused is not None:
                return reused
            # The tensor holds the region around every view: one view runs as it is,
            # several are filled again each into its own batch row.
            return np.array(self.infer(frame, crop, filled=True), copy=True)

    def label_frame(
        self, frame: np.ndarray, top_k: int | None = None, min_confidence: float | None = None,
        *, crop: Crop | None = None,
    ) -> Result:
        """Top-k labels of one decoded RGB frame (any size), of its ``crop`` region
        (default the config's)."""
        with self._lock:
            return self.results(self.infer(frame, crop), top_k, min_confidence)

    def infer(self, frame: np.ndarray, crop: Crop | None = None, filled: bool = False) -> np.ndarray:
        """Stages 3-4 under ``_lock``: one row of raw scores for ``frame`` (``crop``, default
        the config's). Several views (``crop_mode=squares``) run as one batch and their
        merged probabilities come back in the output's raw units (float). ``filled``:
        a lone view is already in the input tensor."""
        crop = self.crop if crop is None else crop
        views = crop.views(frame.shape[1], frame.shape[0], self.model.input_size)
        if len(views) == 1:
            if not filled:
                self.fill(frame, self.model.input_slot(0), crop, views[0])
            return self.model.run()[0]
        return self._infer_views(frame, views, crop)

    def _infer_views(self, frame: np.ndarray, views: List[Box | None], crop: Crop) -> np.ndarray:
        """Several views of one frame run as one batch, their probabilities merged
        (crop_merge), in the output's raw units (see ``infer``)."""
        if self._parallel_views is not None:
            probs = self._parallel_views.run(views, lambda box, slot: self.fill(frame, slot, crop, box))
            return self.merge_views(probs)
        model = self.model
        batched = self._batched_views(len(views))
        if batched is not None:
            batched.set_batch(len(views))
            for i, box in enumerate(views):
                self.fill(frame, batched.input_slot(i), crop, box)
            probs = batched.dequantize(batched.run())
        else:  # no batch rewrite for this model: one invoke per view
            rows = []
            for box in views:
                self.fill(frame, model.input_slot(0), crop, box)
                rows.append(model.dequantize(model.run()[0]))
            probs = np.stack(rows)
        return self.merge_views(probs)

    def merge_views(self, probs: np.ndarray) -> np.ndarray:
        """The (views, classes) probabilities of one frame's views merged (crop_merge),
        in the output's raw units (what ``results`` and the gate's margin take)."""
        merged = merge_scores(probs, self.config.crop_merge)
        model = self.model
        if model.output_dtype == np.float32:
            return merged
        return merged / model.output_scale + model.output_zero_point

    def _batched_views(self, n: int) -> Any:
        """The model rewritten to a batch of at least ``n`` (pyai/batching.py), or None when
        ``batch_mode`` is loop or the model cannot be rewritten (called under ``_lock``)."""
        if self.config.batch_mode == "loop" or self._views_model is False:
            return None
        if self._views_model is None or self._views_model.max_batch < n:
            try:
                # The classifier's bytes: the file may have been replaced since it loaded.
                self._views_model = BatchedModel(self.config.model, self.config.interpreter_threads,
                                                 max(n, self.config.crop_squares + self.config.crop_whole),
                                                 content=self.model.content)
            except BatchRewriteError as exc:
                log.warning("pyai: squares run one invoke each: %s", exc)
                self._views_model = False
                return None
        return self._views_model

    # -- many frames: the batching engine ------------------------------------------

    @property
    def engine(self) -> Engine:
        """The batching engine, started on first use (shares this classifier's model)."""
        with self._engine_lock:
            if self._engine is None:
                # Imported here, not at the top: the engine and the batch rewriter's
                # flatbuffer schema add ~20 ms to every plugin start, and a rule that
                # only calls labelImage never needs them. The engine never imports
                # this module (it runs the stages of engine.Stages), so no circle.
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
        desc.update(self.card.describe())
        if self.splitter is not None:
            desc["jpeg_decoder"] = f"native_jpeg, {self.splitter.stats()['threads']} threads"
        else:
            desc["jpeg_decoder"] = "simplejpeg"
        if self._parallel_views is not None:
            desc["views"] = f"up to {self._parallel_views.lanes} at once, one thread each"
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
        with self._lock:  # after the frame in flight, if any; later frames take the batch path
            views, self._parallel_views = self._parallel_views, None
        if views is not None:
            views.close()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
