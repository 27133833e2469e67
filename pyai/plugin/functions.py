"""The SQL functions pyai exposes to eKuiper, as thin wrappers of the Python API.

- ``labelImage(img [, topK [, minConfidence]])``: one frame -> top-k list.
- ``labelImages(col)``: aggregate over a window's frames -> one list per frame,
  ``{"error": reason}`` in place of a bad frame.
- ``pyaiStats()``: the engine's counters and latency percentiles.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

from ..errors import BadInput, PyaiError, drop_tracebacks
from ..source import b64decode, to_bytes
from .runtime import FrameArg, Function, one_line

if TYPE_CHECKING:
    from ..classifier import Classifier

log = logging.getLogger(__name__)

# Longest a call waits for the model to finish loading. Loading takes 0.1-0.3 s
# on x86-64 and a few seconds on a slow board; this only stops a call from
# waiting forever on a load that hangs.
LOAD_WAIT_S = 120.0


class ClassifierHolder:
    """Loads the classifier once, on a thread of its own, and remembers why if it could not;
    replaces it with a new one (a model change) without a call seeing neither.

    The plugin answers eKuiper's handshake and ``start`` commands while the model
    loads (eKuiper 1.x gives the handshake 5 s, which a slow board can spend on
    imports and the model alone); a call that needs the classifier before it is
    ready waits for it instead of failing.

    Calls hold the classifier they started with (:meth:`use`): :meth:`replace` hands
    new calls the new one at once and returns only when every call on the old one
    has answered, so from then on (the change is acknowledged) no answer comes from
    the old model.
    """

    def __init__(self, factory: Callable[[], "Classifier"], background: bool = True):
        self.error: Optional[str] = None
        self.classifier: Optional["Classifier"] = None
        self.load_seconds: Optional[float] = None
        self.generation = 0
        self._factory = factory
        self._ready = threading.Event()
        self._calls = threading.Condition()
        self._in_flight: Dict[int, int] = {}  # id(classifier) -> calls using it
        if background:
            threading.Thread(target=self._load, name="pyai-load", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.classifier = self._factory()
        except (PyaiError, OSError, ValueError, RuntimeError, ImportError) as exc:
            self.error = f"pyai could not load its model: {one_line(exc)}"
            log.error("%s", self.error)
        finally:
            self.load_seconds = time.perf_counter() - started
            self._ready.set()

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        """True once loading has ended (loaded or failed)."""
        return self._ready.wait(timeout_s)

    def get(self) -> "Classifier":
        if not self._ready.wait(LOAD_WAIT_S):
            raise PyaiError(f"pyai model still loading after {LOAD_WAIT_S:.0f} s")
        if self.classifier is None:
            raise PyaiError(self.error or "pyai model not loaded")
        return self.classifier

    @contextmanager
    def use(self) -> Iterator["Classifier"]:
        """The current classifier, counted as in use until the block ends."""
        self.get()
        with self._calls:
            clf = self.get()
            self._in_flight[id(clf)] = self._in_flight.get(id(clf), 0) + 1
        try:
            yield clf
        finally:
            with self._calls:
                left = self._in_flight[id(clf)] - 1
                if left:
                    self._in_flight[id(clf)] = left
                else:
                    del self._in_flight[id(clf)]
                    self._calls.notify_all()

    def replace(self, new: "Classifier", drain_s: float = LOAD_WAIT_S) -> Optional["Classifier"]:
        """Serve ``new`` from now on; returns once the calls on the old one have answered
        (at most ``drain_s``), after closing it (its engine finishes what it accepted)."""
        with self._calls:
            old, self.classifier = self.classifier, new
            self.error = None
            self.generation += 1
            self._ready.set()
            if old is not None:
                self._calls.wait_for(lambda: id(old) not in self._in_flight, drain_s)
        if old is not None:
            old.close()
        return old

    def failed(self, reason: str) -> None:
        """A model change that could not load: the current classifier (if any) goes on."""
        if self.classifier is None:
            self.error = reason


def _frame_bytes(clf: "Classifier", arg: Any) -> bytes | memoryview:
    """A Go-encoded []byte arrives as base64 text; decode it without copying the request."""
    if isinstance(arg, FrameArg):
        return b64decode(arg.view, clf.config.max_encoded_bytes)
    return to_bytes(arg, clf.config.max_encoded_bytes)


def _int_arg(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise BadInput(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _float_arg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"{name} must be a number, got {value!r}")
    return float(value)


def _site(meta: Any) -> str:
    """The gate's call-site key: the function meta as eKuiper sends it (the JSON text of
    ruleId, opId, instanceId, funcId: the same text for every call from one site)."""
    return meta if isinstance(meta, str) else json.dumps(meta, sort_keys=True)


def _no_heartbeat() -> None:
    pass


class LabelImage:
    """``labelImage(img [, topK [, minConfidence]])``.

    ``heartbeat`` (set by the runtime when the guardian watches for hangs) marks
    progress: the wait for the model to load is not part of a call's time."""

    takes_meta = True

    def __init__(self, holder: ClassifierHolder):
        self.holder = holder
        self.heartbeat: Callable[[], None] = _no_heartbeat

    def validate(self, args: List[Any]) -> str:
        if not 1 <= len(args) <= 3:
            return f"labelImage takes 1 to 3 arguments (image [, topK [, minConfidence]]), got {len(args)}"
        return ""

    def is_aggregate(self) -> bool:
        return False

    def exec(self, args: List[Any], meta: Any = None) -> Any:
        if not 1 <= len(args) <= 3:
            raise BadInput(f"labelImage takes 1 to 3 arguments, got {len(args)}")
        k = _int_arg(args[1], "topK") if len(args) > 1 else None
        min_conf = _float_arg(args[2], "minConfidence") if len(args) > 2 else None
        with self.holder.use() as clf:
            self.heartbeat()
            return clf.label_bytes(_frame_bytes(clf, args[0]), _site(meta), top_k=k, min_confidence=min_conf)


class LabelImages:
    """``labelImages(col)``: aggregate; one result list per frame of the window, in order.
    Each frame done marks progress (``heartbeat``): a long window of legal frames is
    never taken for a hang."""

    takes_meta = True

    def __init__(self, holder: ClassifierHolder):
        self.holder = holder
        self.heartbeat: Callable[[], None] = _no_heartbeat

    def validate(self, args: List[Any]) -> str:
        if len(args) != 1:
            return f"labelImages takes 1 argument (the image column), got {len(args)}"
        return ""

    def is_aggregate(self) -> bool:
        return True

    def exec(self, args: List[Any], meta: Any = None) -> Any:
        if len(args) != 1:
            raise BadInput(f"labelImages takes 1 argument, got {len(args)}")
        frames = args[0]
        if isinstance(frames, FrameArg):
            frames = [frames]
        if not isinstance(frames, list):
            raise BadInput("labelImages expects the list of a window's images")
        with self.holder.use() as clf:
            return self._label(clf, frames, meta)

    def _label(self, clf: "Classifier", frames: List[Any], meta: Any) -> List[Any]:
        beat = self.heartbeat
        beat()
        out: List[Any] = []
        good: List[int] = []
        data = []
        for f in frames:
            try:
                data.append(_frame_bytes(clf, f))
            except PyaiError as exc:  # this frame only: the window is still labelled
                out.append({"error": one_line(exc)})
                continue
            good.append(len(out))
            out.append(None)
        if clf.gate is not None:
            return self._gated(clf, _site(meta), out, good, data, beat)
        for i, fut in zip(good, clf.engine.submit_many(data)):
            try:
                out[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 - one frame's failure must not sink the window
                out[i] = {"error": one_line(exc)}
                # Its traceback holds this frame, whose ``fut`` holds it: a cycle that
                # keeps the window's request and buffers until the cyclic GC runs.
                drop_tracebacks(exc)
            beat()
        return out

    @staticmethod
    def _gated(clf: "Classifier", site: str, out: List[Any], good: List[int], data: List[Any],
               beat: Callable[[], None]) -> List[Any]:
        # In order, one by one: each frame is compared with the last frame run at
        # this site, which may be an earlier frame of this window. A window of a
        # fixed camera is mostly answered by the gate; a changing one runs at the
        # speed of sequential labelImage calls, without the engine's batches.
        for i, frame_bytes in zip(good, data):
            try:
                out[i] = clf.label_bytes(frame_bytes, site)
            except PyaiError as exc:  # this frame only
                out[i] = {"error": one_line(exc)}
            beat()
        return out


class PyaiStats:
    """``pyaiStats()``: counters and latency percentiles of the engine, and which
    process answers (its pid, and the pid of the one it replaced, if it healed)."""

    def __init__(self, holder: ClassifierHolder, process_info: Optional[Callable[[], Dict[str, Any]]] = None):
        self.holder = holder
        self.process_info = process_info
        self.heartbeat: Callable[[], None] = _no_heartbeat

    def validate(self, args: List[Any]) -> str:
        return "" if len(args) == 0 else f"pyaiStats takes no arguments, got {len(args)}"

    def is_aggregate(self) -> bool:
        return False

    def exec(self, args: List[Any]) -> Any:
        clf = self.holder.get()
        self.heartbeat()
        # clf.stats() does not start the engine: {} until labelImages has run.
        out = {"model": clf.describe(), "engine": clf.stats(), "model_generation": self.holder.generation}
        if clf.gate is not None:
            out["gate"] = clf.gate_stats()
        if clf.splitter is not None:
            out["jpeg"] = clf.splitter.stats()
        if self.process_info is not None:
            out["process"] = self.process_info()
        return out


def build_functions(
    holder: ClassifierHolder, process_info: Optional[Callable[[], Dict[str, Any]]] = None
) -> Dict[str, Callable[[], Function]]:
    return {
        "labelImage": lambda: LabelImage(holder),
        "labelImages": lambda: LabelImages(holder),
        "pyaiStats": lambda: PyaiStats(holder, process_info),
    }
