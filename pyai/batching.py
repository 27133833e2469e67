"""Batch inference: rewrite a batch-1 TFLite classifier so one invoke runs N frames.

The shipped models have a fixed batch of 1 and end in a ``Reshape`` whose shape
constant is ``[1, 1001]``, so ``resize_tensor_input`` alone fails at
``allocate_tensors``. We patch the flatbuffer itself, in place in a copy of its
bytes (no re-serialisation, so weights, metadata and signatures are untouched):

- every activation tensor (no constant data) whose first dimension is 1 gets N,
  so the file describes the batched graph and the input tensor is (N, H, W, 3);
- every Reshape's shape (the constant input and ``ReshapeOptions.new_shape``)
  gets -1 as its first dimension, which the runtime resolves to N.

Only ops known to treat batch rows independently are accepted; anything else
raises :class:`BatchRewriteError` and the engine falls back to one invoke per
frame, so an unfamiliar model is slower but never wrong.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from typing import Dict, Iterable, List, Set

import numpy as np

from .errors import ModelError
from .model import Model

log = logging.getLogger(__name__)


class BatchRewriteError(ModelError):
    """The model cannot be given a batch dimension safely."""


try:
    from ai_edge_litert import schema_py_generated as _schema
except ImportError:  # pragma: no cover - tflite-runtime boxes: loop mode only
    _schema = None

# Ops whose output row i depends only on input row i, whatever their constants.
_ROW_WISE = {
    "ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV",
    "FULLY_CONNECTED", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "LOG_SOFTMAX",
    "MAX_POOL_2D", "MUL", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "SOFTMAX",
    "SUB", "TANH",
}
# Row-wise as long as a constant axis argument leaves dimension 0 alone.
_AXIS_INPUT = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}


def available() -> bool:
    return _schema is not None


def _op_names() -> Dict[int, str]:
    return {v: k for k, v in vars(_schema.BuiltinOperator).items() if not k.startswith("_")}


def _const_data(model, tensor) -> np.ndarray | None:
    """The tensor's constant bytes as a writable view into the model buffer, or None."""
    idx = tensor.Buffer()
    if idx == 0 or idx >= model.BuffersLength():
        return None
    buf = model.Buffers(idx)
    if buf.Offset() > 1:
        # Data stored after the flatbuffer (models > 2 GB): not ours to patch.
        raise BatchRewriteError("constant stored outside the flatbuffer")
    if buf.DataLength() == 0:
        return None
    return buf.DataAsNumpy()


def _int_vector(model, tensor) -> np.ndarray:
    data = _const_data(model, tensor)
    if data is None or tensor.Type() not in (_schema.TensorType.INT32, _schema.TensorType.INT64):
        raise BatchRewriteError("expected a constant int32/int64 tensor")
    return data.view("<i4" if tensor.Type() == _schema.TensorType.INT32 else "<i8")


def _axes_exclude_batch(axes: Iterable[int], rank: int) -> bool:
    return all(int(a) % rank != 0 for a in axes) if rank else False


def rewrite_batch(content: bytes, batch: int) -> bytes:
    """A copy of the TFLite flatbuffer ``content`` with batch dimension ``batch``.

    Raises BatchRewriteError when the graph is not one we can prove row-wise.
    """
    if _schema is None:
        raise BatchRewriteError("the TFLite schema (ai-edge-litert) is not installed")
    if batch < 1:
        raise BatchRewriteError(f"batch must be >= 1, got {batch}")
    buf = bytearray(content)
    if len(buf) < 8 or not _schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise BatchRewriteError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _rewrite(buf, batch)
    except (AttributeError, IndexError, struct.error, TypeError, ValueError) as exc:
        raise BatchRewriteError(f"cannot parse the model: {exc}") from None


def _rewrite(buf: bytearray, batch: int) -> bytes:
    model = _schema.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() != 1:
        raise BatchRewriteError(f"{model.SubgraphsLength()} subgraphs (control flow) are not supported")
    sg = model.Subgraphs(0)
    names = _op_names()
    buffer_users: Dict[int, int] = {}
    for t in range(sg.TensorsLength()):
        b = sg.Tensors(t).Buffer()
        buffer_users[b] = buffer_users.get(b, 0) + 1

    reshape_shapes: List[np.ndarray] = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        inputs = op.InputsAsNumpy() if op.InputsLength() else np.zeros(0, np.int32)
        first = sg.Tensors(int(inputs[0])) if len(inputs) and inputs[0] >= 0 else None
        if (first is not None and first.ShapeLength() and first.Shape(0) != 1
                and _const_data(model, first) is None):
            raise BatchRewriteError(f"{name} #{i} input has batch {first.Shape(0)}, expected 1")
        if name in _ROW_WISE:
            continue
        if name in _AXIS_INPUT:
            axes = _int_vector(model, sg.Tensors(int(inputs[1])))
            if not _axes_exclude_batch(axes, first.ShapeLength()):
                raise BatchRewriteError(f"{name} #{i} reduces over the batch dimension")
            continue
        if name == "CONCATENATION":
            opts = _schema.ConcatenationOptions()
            tab = op.BuiltinOptions()
            opts.Init(tab.Bytes, tab.Pos)
            if not _axes_exclude_batch([opts.Axis()], first.ShapeLength()):
                raise BatchRewriteError(f"CONCATENATION #{i} joins along the batch dimension")
            continue
        if name == "SQUEEZE":
            tab = op.BuiltinOptions()
            dims: Set[int] = set()
            if tab is not None:
                opts = _schema.SqueezeOptions()
                opts.Init(tab.Bytes, tab.Pos)
                dims = {int(opts.SqueezeDims(j)) for j in range(opts.SqueezeDimsLength())}
            # No dims means "every size-1 dimension", which would drop batch 1.
            if not dims or not _axes_exclude_batch(dims, first.ShapeLength()):
                raise BatchRewriteError(f"SQUEEZE #{i} may remove the batch dimension")
            continue
        if name == "RESHAPE":
            if len(inputs) > 1 and inputs[1] >= 0:
                shape_t = sg.Tensors(int(inputs[1]))
                if buffer_users.get(shape_t.Buffer(), 0) != 1:
                    raise BatchRewriteError(f"RESHAPE #{i} shares its shape constant")
                reshape_shapes.append(_int_vector(model, shape_t))
            tab = op.BuiltinOptions()
            if tab is not None and op.BuiltinOptionsType() == _schema.BuiltinOptions.ReshapeOptions:
                opts = _schema.ReshapeOptions()
                opts.Init(tab.Bytes, tab.Pos)
                if opts.NewShapeLength():
                    reshape_shapes.append(opts.NewShapeAsNumpy())
            continue
        raise BatchRewriteError(f"op {name} #{i} is not known to keep batch rows independent")

    for shape in reshape_shapes:
        if len(shape) == 0 or shape[0] not in (1, -1) or (shape[1:] == -1).any():
            raise BatchRewriteError(f"cannot batch a Reshape to {shape.tolist()}")
    for shape in reshape_shapes:
        shape[0] = -1

    patched = 0
    for t in range(sg.TensorsLength()):
        tensor = sg.Tensors(t)
        if tensor.IsVariable():
            raise BatchRewriteError("models with state (variable tensors) are not supported")
        # Rank < 2 has no batch dimension to speak of (the runtime re-derives
        # every activation shape from the input anyway).
        if _const_data(model, tensor) is not None or tensor.ShapeLength() < 2:
            continue
        shape = tensor.ShapeAsNumpy()
        if shape[0] == 1:
            shape[0] = batch
            patched += 1
            if tensor.ShapeSignatureLength():
                sig = tensor.ShapeSignatureAsNumpy()
                if sig[0] == 1:
                    sig[0] = batch
    if sg.InputsLength() != 1 or sg.Tensors(sg.Inputs(0)).Shape(0) != batch:
        raise BatchRewriteError("the input tensor was not rewritten")
    log.debug("batch %d rewrite: %d tensors, %d reshapes", batch, patched, len(reshape_shapes))
    return bytes(buf)


class BatchedModel(Model):
    """A batch-rewritten model whose batch can be set per run, from 1 to ``max_batch``.

    Changing the batch re-plans the arena (about 0.1 ms with XNNPACK, no weight
    repacking), so a partial batch costs what it computes instead of a full one.
    Views of the tensors taken before :meth:`set_batch` are invalid after it.
    """

    def __init__(self, path: str, threads: int, max_batch: int, content: bytes | None = None):
        if content is None:
            try:
                with open(path, "rb") as f:
                    content = f.read()
            except OSError as exc:
                raise ModelError(f"cannot read model {path}: {exc}") from None
        super().__init__(path, threads, batch=max_batch, model_content=rewrite_batch(content, max_batch))
        if self.input.batch != max_batch or self.output_tensor.shape[0] != max_batch:
            raise BatchRewriteError(f"rewritten model has batch {self.input.batch}, wanted {max_batch}")
        self.max_batch = max_batch
        self.batch = max_batch

    def set_batch(self, k: int) -> None:
        if k == self.batch:
            return
        if not 1 <= k <= self.max_batch:
            raise ValueError(f"batch {k} outside 1..{self.max_batch}")
        # Our own views would dangle once the arena moves; drop them first. The
        # wrapper's public resize refuses while any view exists (Model keeps a
        # bound Invoke), so call the raw methods as Model.run does.
        self.input_tensor = self.output_tensor = None  # type: ignore[assignment]
        raw = self._it._interpreter
        raw.ResizeInputTensor(self._in_index, np.array([k, self.input.height, self.input.width, 3], np.int32), False)
        raw.AllocateTensors()
        self.input_tensor = self._it.tensor(self._in_index)()
        self.output_tensor = self._it.tensor(self._out_index)().reshape(k, self.num_classes)
        self.batch = k


# -- choosing between one batched invoke and one invoke per frame ---------------------

# One batch-8 invoke vs 8 batch-1 invokes of the shipped models: medians of 40-60
# interleaved rounds from bench/engine/engine_tuning.py --batch-only on a 2-core x86-64
# (XNNPACK, ai-edge-litert 2.3); three runs agreed within 0.005.
# sha256 -> {interpreter threads: speedup}. Threads beyond the largest key use it.
MEASURED_SPEEDUP: Dict[str, Dict[int, float]] = {
    # mobilenet_v2_1.0_224_quant: 6.68 / 3.42 ms per frame at 1 / 2 threads
    "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776": {1: 1.003, 2: 1.022},
    # mobilenet_v1_0.25_128_quant: 0.44 / 0.24 ms
    "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785": {1: 1.041, 2: 1.093},
    # mobilenet_v1_0.75_192_quant: 4.61 / 2.39 ms
    "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a": {1: 1.025, 2: 1.048},
    # tf2_mobilenet_v2_1.0_224_ptq: 3.28 / 1.79 ms
    "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c": {1: 1.010, 2: 1.047},
}
# Below this a batched invoke is not worth it: the gain is within what the
# measurement reproduces, and the batched interpreter costs 10-20 MB more RSS
# plus ~0.1 ms to re-plan whenever the batch size changes.
NATIVE_MIN_SPEEDUP = 1.015


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_batch_mode(requested: str, model_path: str, threads: int) -> str:
    """``native`` or ``loop`` for ``requested`` (auto | native | loop)."""
    if requested != "auto":
        return requested
    if not available():
        return "loop"
    try:
        measured = MEASURED_SPEEDUP.get(file_sha256(model_path))
    except OSError:
        measured = None
    if not measured:
        log.info("batch_mode auto: no measurement for %s, using loop "
                 "(run bench/engine/engine_tuning.py on this machine and set batch_mode)", model_path)
        return "loop"
    known = [t for t in measured if t <= threads] or [min(measured)]
    speedup = measured[max(known)]
    mode = "native" if speedup >= NATIVE_MIN_SPEEDUP else "loop"
    log.debug("batch_mode auto: %s measured %.2fx at %d threads -> %s", model_path, speedup, max(known), mode)
    return mode
