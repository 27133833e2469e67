"""Configuration: one dataclass, read from the plugin's JSON file, overridden by environment.

eKuiper passes nothing plugin-specific to the process, so the plugin reads
``pyai_config.json`` from its own folder; every key can be overridden by an
environment variable ``PYAI_<KEY>`` (upper case), e.g. ``PYAI_THREADS=4``.
Relative model/labels paths are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from .crop import Crop
from .errors import ModelError
from .merge import MERGES

CONFIG_FILE_NAME = "pyai_config.json"
ENV_PREFIX = "PYAI_"
MAX_AUTO_THREADS = 4


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class Config:
    """Every tunable of pyai, with its default.

    model, labels: paths of the .tflite model and its labels file (one label a line,
        line 0 is index 0). An empty ``labels`` (the default) takes the label file the
        model's TFLite metadata names (packed in the .tflite file, as Model Maker and
        MediaPipe Model Maker export it); a labels file whose line count is not the
        model's class count is refused at start (docs/own-model.md).
    label_locale: with metadata labels, the locale of the label file to answer with
        (the metadata's display names, e.g. "fr"); "" = the first label file.
    scores: what the model's output holds: "auto" (from the graph and the metadata:
        a softmax/logistic output or a quantized [0, 1] range is a probability, other
        outputs are logits), "probability" or "logits". For logits ``confidence`` is the
        softmax of the row (a probability over the classes). A metadata score
        calibration is applied in "auto".
    threads: interpreter threads; 0 means the usable cores, capped at 4 (XNNPACK
        gains little beyond that for a 224x224 MobileNet and it starves the decoder).
        A frame of several views (crop_mode=squares) runs them instead one a core,
        each on its own one-thread interpreter, up to this many at once.
    top_k: how many results ``labelImage`` returns, best first.
    min_confidence: results below this score are dropped; unset (the default): the
        score threshold of the model's TFLite metadata (ScoreThresholdingOptions, as
        MediaPipe applies it) where it has one, else 0.
    decode_oversample: JPEG DCT-domain downscaling stops where the crop region
        (crop_mode, crop_fraction) is this multiple of the model's input size, so the
        final resize is always a real (antialiased) downscale. With the whole frame
        and mobilenet_v2_1.0_224_quant, 1.0 decodes a 1352x900 photo to 338x225 and
        the last step is a near-1:1 resample that blurs: kite_and_cold.jpg flips from
        seashore to volleyball. On 500 labelled photos 1.0 and 1.1 are within noise
        of each other for every model and crop (bench/accuracy/accuracy.py); with the default
        crop, 1.1 decodes 720p at 1/2 scale (faster than 3/8 here) and 1080p at 3/8.
    crop_mode, crop_fraction: the region of each frame the model sees (pyai/crop.py):
        "stretch" takes the centre crop_fraction of each side of the frame and
        stretches it to the model's input (1.0: the whole frame, squashed to the
        input's aspect); "aspect" takes the largest centred region with the input's
        aspect (a 16:9 frame's centre square for a square model), then
        crop_fraction of each side of that. Fused into the resize: no copy.
        "letterbox" fits the centre crop_fraction of the frame into the input
        without squashing it and pads the rest with mid-grey; "squares" runs
        crop_squares input-aspect squares spread along the frame's long side as one
        batch and merges their scores (crop_merge). See docs/accuracy.md.
    crop_squares: how many squares ``crop_mode=squares`` splits a frame into (1-4;
        1 is the centre square).
    crop_whole: ``crop_mode=squares`` also runs the whole frame (its centre
        crop_fraction), stretched to the input, as one more view of the batch.
    crop_merge: how the squares' scores become one answer: "mean" (of the
        probabilities), "max" (of each class) or "confident" (the square whose
        top class is the most confident); pyai/merge.py.
    decode_threads: threads one JPEG frame is decoded on by ``labelImage`` and
        ``Classifier.label`` (its rows split between them, ``native_jpeg``); 0 means
        the usable cores, capped at 4; 1 decodes in one piece. Calls come one at a
        time, so without it the other cores idle while a frame decodes. Only a frame
        of one view is split: several views already use the cores.
    mean, std: input normalisation ``(x - mean) / std``; unset (null) = the model's
        metadata. A float-input model needs them from one or the other; a quantized
        input maps pixels through them and its quantization (raw pixels without them).
    max_encoded_bytes: largest accepted encoded image (checked on the base64
        length before decoding it).
    max_pixels: largest accepted image in pixels (read from the header before decoding).
    max_decode_ms: largest accepted estimated decode time: the cost of each image is
        estimated from its header (format, coding, bit depth, scans, size) with costs
        measured on a 2-core x86-64 (pyai/header.py, COST), and a dearer image is refused
        instead of running into the host's 5 s reply timeout. On a slower CPU lower it by
        the ratio of the speeds (halve it on a CPU half as fast).
    workers: decode/resize threads of the batching engine.
    max_batch: most frames the engine runs in one inference batch.
    max_queue_delay_ms: longest the engine waits idle, per batch, for frames the
        decoders are still working on (a lone frame never waits; queued frames the
        inference thread decodes itself do not count).
    batch_mode: "auto" (use the batch the bench found faster), "native" (rewrite the
        model's batch dimension) or "loop" (one invoke per frame).
    stats_log_interval_s: how often the engine logs its counters; 0 disables.
    self_heal: the plugin process starts a guardian process that replaces it if it
        dies (eKuiper never restarts a function plugin); see pyai/plugin/guardian.py.
    hang_timeout_s: with self_heal, a process whose call has made no progress for this
        long while it used next to no CPU (or that has been stopped this long) is
        frozen: the guardian replaces it; a busy one only after twice this long.
        Below eKuiper's 5 s reply deadline, and at least a second above the longest
        decode the limits allow (max_decode_ms; a window's frames each count apart);
        0 = only a process that dies is replaced.
    skip_unchanged: the unchanged-frame gate's threshold (pyai/gate.py); 0 = off.
        A frame none of whose cells moved by more than this many grey levels
        (brightness change taken away) from the last frame the model ran on at the
        same call site gets that frame's answer. ``true``/``on`` = the default
        threshold the gate study picked (``pyai.gate.DEFAULT_THRESHOLD``).
    reload_check_s: how often the plugin process checks its config file and the model
        and labels files it names; a change loads the new model beside the old one and
        swaps them (pyai/plugin/model_watch.py). 0 = never (a change then needs a restart).
    skip_unchanged_margin: the gate reuses an answer only if its top-1 score led the
        second by at least this much; 0 (default) = any answer.
    skip_unchanged_check_every: the model runs again on a still scene after this many
        reused answers and must agree with the reused one for reuse to go on: the
        most frames a reused answer goes unchecked (32, about a second at 30 fps);
        0 = never checked.
    malloc_mmap_threshold_kb: the plugin process fixes glibc's mmap threshold at this
        many KiB when it starts, so a frame's large buffers are mmaps returned on free
        and its RSS does not drift with the order of large and hostile inputs
        (pyai/allocator.py, docs/faults.md); 0 = glibc's dynamic default. Nothing
        happens with another C library, nor in the Python API's own processes.
    """

    model: str = "tf2_mobilenet_v2_1.0_224_ptq.tflite"
    labels: str = ""
    label_locale: str = ""
    scores: str = "auto"
    threads: int = 0
    top_k: int = 5
    min_confidence: Optional[float] = None
    decode_oversample: float = 1.1
    # The centre square and the whole frame, one batch of two, probabilities averaged:
    # docs/accuracy.md (camera frames) for why.
    crop_mode: str = "squares"
    crop_fraction: float = 1.0
    crop_squares: int = 1
    crop_whole: bool = True
    crop_merge: str = "mean"
    decode_threads: int = 0
    mean: Optional[float] = None
    std: Optional[float] = None
    max_encoded_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_decode_ms: float = 2000.0
    workers: int = 2
    max_batch: int = 8
    max_queue_delay_ms: float = 2.0
    batch_mode: str = "auto"
    stats_log_interval_s: float = 60.0
    self_heal: bool = True
    hang_timeout_s: float = 3.5
    skip_unchanged: float = 0.0
    skip_unchanged_margin: float = 0.0
    skip_unchanged_check_every: int = 32
    reload_check_s: float = 0.25
    malloc_mmap_threshold_kb: int = 128

    def __post_init__(self) -> None:
        self.skip_unchanged = _gate_threshold(self.skip_unchanged)
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                setattr(self, f.name, _coerce(f.type, value))
            except (TypeError, ValueError) as exc:
                raise ModelError(f"config {f.name}={value!r}: {exc}") from None
        if self.top_k < 1:
            raise ModelError("config top_k must be >= 1")
        if self.threads < 0 or self.decode_threads < 0 or self.workers < 1 or self.max_batch < 1:
            raise ModelError("config threads and decode_threads must be >= 0, workers and max_batch >= 1")
        if self.batch_mode not in ("auto", "native", "loop"):
            raise ModelError("config batch_mode must be auto, native or loop")
        if self.decode_oversample < 1.0:
            raise ModelError("config decode_oversample must be >= 1.0")
        try:
            self.crop
        except ValueError as exc:
            raise ModelError(f"config {exc}") from None
        if self.crop_merge not in MERGES:
            raise ModelError(f"config crop_merge must be one of {', '.join(MERGES)}")
        if self.max_encoded_bytes < 1 or self.max_pixels < 1 or self.max_decode_ms <= 0:
            raise ModelError("config max_encoded_bytes, max_pixels and max_decode_ms must be > 0")
        if self.std is not None and not (math.isfinite(self.std) and self.std != 0):
            raise ModelError("config std must be a non-zero number")
        if self.mean is not None and not math.isfinite(self.mean):
            raise ModelError("config mean must be a number")
        if self.scores not in ("auto", "probability", "logits"):
            raise ModelError("config scores must be auto, probability or logits")
        if not math.isfinite(self.hang_timeout_s) or self.hang_timeout_s < 0 \
                or 0 < self.hang_timeout_s * 1000 < self.max_decode_ms + 1000:
            raise ModelError(f"config hang_timeout_s must be 0 (off) or at least 1 s above max_decode_ms "
                             f"({self.max_decode_ms / 1000:.1f} s), got {self.hang_timeout_s}")
        if not self.skip_unchanged >= 0:
            raise ModelError("config skip_unchanged must be >= 0 (0 = off), true or false")
        if not self.reload_check_s >= 0:
            raise ModelError("config reload_check_s must be >= 0 (0 = off)")
        if self.malloc_mmap_threshold_kb < 0:
            raise ModelError("config malloc_mmap_threshold_kb must be >= 0 (0 = glibc's dynamic default)")
        if not 0 <= self.skip_unchanged_margin <= 1:
            raise ModelError("config skip_unchanged_margin must be between 0 and 1")
        if self.skip_unchanged_check_every < 0:
            raise ModelError("config skip_unchanged_check_every must be >= 0 (0 = never)")

    @property
    def interpreter_threads(self) -> int:
        return self.threads or min(usable_cores(), MAX_AUTO_THREADS)

    @property
    def jpeg_decode_threads(self) -> int:
        return self.decode_threads or min(usable_cores(), MAX_AUTO_THREADS)

    @property
    def crop(self) -> Crop:
        """The region of each frame the model sees (``crop_mode``, ``crop_fraction``)."""
        return Crop(self.crop_mode, self.crop_fraction, self.crop_squares, self.crop_whole)

    def decode_size(self, input_size: Tuple[int, int]) -> Tuple[int, int]:
        """(width, height) a decoded frame must cover for a model input of ``input_size``:
        the input times ``decode_oversample``, rounded up (the whole frame's need;
        ``Crop.decode_size`` gives a region's)."""
        w, h = input_size
        return math.ceil(w * self.decode_oversample), math.ceil(h * self.decode_oversample)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _gate_threshold(value: Any) -> Any:
    """``skip_unchanged`` also takes a switch: on = the default threshold, off = 0."""
    word = value.strip().lower() if isinstance(value, str) else None
    if value is True or (word in _BOOL_WORDS and word not in ("0", "1") and _BOOL_WORDS[word]):
        from .gate import DEFAULT_THRESHOLD

        return DEFAULT_THRESHOLD
    if value is False or (word in _BOOL_WORDS and word not in ("0", "1") and not _BOOL_WORDS[word]):
        return 0.0
    return value


def _coerce(type_name: Any, value: Any) -> Any:
    name = type_name if isinstance(type_name, str) else type_name.__name__
    if name.startswith("Optional["):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        name = name[len("Optional["):-1]
    if name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError("expected true or false")
    if name == "int":
        if isinstance(value, bool):
            raise TypeError("expected an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return int(value)
    if name == "float":
        if isinstance(value, bool):
            raise TypeError("expected a number")
        return float(value)
    return str(value)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build a Config from defaults < JSON file < ``PYAI_*`` environment < keyword overrides.

    ``path`` may be the file or the folder holding ``pyai_config.json``; when it is
    None, ``PYAI_CONFIG`` names the file, and a missing file just means defaults.
    """
    env = os.environ if env is None else env
    known = {f.name for f in fields(Config)}
    values: dict[str, Any] = {}
    base = Path.cwd()

    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / CONFIG_FILE_NAME
        base = p.parent
        if p.exists():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot read config {p}: {exc}") from None
            if not isinstance(data, dict):
                raise ModelError(f"config {p} must hold a JSON object")
            unknown = set(data) - known
            if unknown:
                raise ModelError(f"config {p}: unknown keys {sorted(unknown)}")
            values.update(data)

    for name in known:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config(**values)
    for name in ("model", "labels"):
        if not getattr(cfg, name):
            continue  # labels from the model's metadata
        p = Path(getattr(cfg, name)).expanduser()
        if not p.is_absolute():
            p = base / p
        setattr(cfg, name, str(p))
    return cfg
