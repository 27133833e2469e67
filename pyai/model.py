"""The TFLite interpreter: loaded once, input and output tensors held as NumPy views.

LiteRT (``ai-edge-litert``) is the runtime: its XNNPACK delegate runs uint8
MobileNets about 10x faster than ``tflite_runtime`` 2.14, which stays as a
fallback import for boxes where LiteRT has no wheel.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)


def _interpreter_class() -> Tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        raise ModelError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime)") from None


@dataclass(frozen=True)
class InputSpec:
    batch: int
    height: int
    width: int
    dtype: np.dtype
    scale: float
    zero_point: int


class Model:
    """One interpreter and views of its input and output tensors.

    Not thread-safe: exactly one thread may call :meth:`run` at a time.
    """

    def __init__(self, path: str, threads: int = 1, batch: int = 1, model_content: bytes | None = None):
        Interpreter, self.runtime = _interpreter_class()
        if model_content is None:
            # Read once: the interpreter and the metadata reader (pyai/model_card.py) see
            # the same bytes even if the file is replaced meanwhile (a model change).
            try:
                with open(path, "rb") as f:
                    model_content = f.read()
            except FileNotFoundError:
                raise ModelError(f"model file not found: {path}") from None
            except OSError as exc:
                raise ModelError(f"cannot read model {path}: {exc}") from None
        self.content = model_content
        try:
            self._it = Interpreter(model_content=model_content, num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {path}: {exc}") from None
        self.path = path
        self.threads = threads
        inputs = self._it.get_input_details()
        outputs = self._it.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"pyai runs image classifiers (1 input, 1 output); {os.path.basename(path)} has "
                             f"{len(inputs)} inputs and {len(outputs)} outputs (a detector or a multi-head model?)")
        inp, out = inputs[0], outputs[0]
        out_shape = [int(x) for x in out["shape"]]
        if len(out_shape) < 2 or sum(1 for d in out_shape[1:] if d != 1) > 1:
            raise ModelError(f"expected a classifier output of shape [batch, classes], got {out_shape}")
        shape = [int(x) for x in inp["shape"]]
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"expected an NHWC RGB input, got shape {shape}")
        dtype = np.dtype(inp["dtype"])
        if dtype not in (np.uint8, np.int8, np.float32):
            raise ModelError(f"unsupported input type {dtype} (uint8, int8 or float32)")
        if np.dtype(out["dtype"]) not in (np.uint8, np.int8, np.float32):
            raise ModelError(f"unsupported output type {np.dtype(out['dtype'])} (uint8, int8 or float32)")
        scale, zero_point = inp["quantization"]
        self.input = InputSpec(shape[0], shape[1], shape[2], dtype, float(scale), int(zero_point))
        self.num_classes = int(np.prod(out["shape"][1:]))
        oscale, ozero = out["quantization"]
        self.output_dtype = np.dtype(out["dtype"])
        self.output_scale = float(oscale) if oscale else 1.0
        self.output_zero_point = int(ozero)
        self._in_index = inp["index"]
        self._out_index = out["index"]
        # Holding NumPy views of the tensors is safe because tensors are never
        # reallocated after this point; the public invoke() refuses to run while
        # views exist, so we call the wrapped interpreter's Invoke directly.
        self.input_tensor: np.ndarray = self._it.tensor(self._in_index)()
        self.output_tensor: np.ndarray = self._it.tensor(self._out_index)().reshape(shape[0], self.num_classes)
        self._invoke = getattr(getattr(self._it, "_interpreter", None), "Invoke", None)
        if self._invoke is None:  # pragma: no cover - unknown runtime layout
            raise ModelError(f"{self.runtime} interpreter has no raw Invoke")

    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) of one input frame."""
        return self.input.width, self.input.height

    def input_slot(self, i: int = 0) -> np.ndarray:
        """The (H, W, 3) view of batch row ``i`` of the input tensor."""
        return self.input_tensor[i]

    def run(self) -> np.ndarray:
        """Invoke on whatever is in the input tensor; returns the raw output view (batch, classes).

        The view is overwritten by the next run: read or copy it first.
        """
        self._invoke()
        return self.output_tensor

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` in real units, always a new array: callers keep one row per view
        across runs, and ``raw`` is usually the output tensor the next run overwrites."""
        if self.output_dtype == np.float32:
            return raw.astype(np.float32, copy=True)
        return (raw.astype(np.float32) - self.output_zero_point) * self.output_scale

    def describe(self) -> dict:
        from .resize import IMPLEMENTATION

        return {
            "model": os.path.basename(self.path),
            "machine": platform.machine(),
            "runtime": self.runtime,
            "resize": IMPLEMENTATION,
            "threads": self.threads,
            "input": [self.input.batch, self.input.height, self.input.width, 3],
            "input_dtype": str(self.input.dtype),
            "classes": self.num_classes,
        }
