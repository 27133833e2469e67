"""Tiny TFLite image classifiers assembled here from the public flatbuffer schemas, with
TFLite metadata written the way Model Maker's metadata writer does (labels packed as a
zip appended to the model): no TensorFlow, no download.

The network averages each colour channel of the frame, so it tells the dominant
colour: class 0 red, 1 green, 2 blue (``LABELS``)::

    input [1, H, W, 3] --AVERAGE_POOL_2D(H x W)--> [1, 1, 1, 3] --RESHAPE--> [1, 3]
          [--DEQUANTIZE or QUANTIZE to the output type] [--SOFTMAX] --> output

Every input type (uint8, int8, float32) and output type (uint8, int8, float32) the
runtime supports for a classifier can be built, with or without a softmax.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import flatbuffers
import numpy as np

LABELS = ["red", "green", "blue"]

# TensorType
_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int8": 9}
# BuiltinOperator: code, (version by input type)
AVERAGE_POOL_2D, DEQUANTIZE, RESHAPE, SOFTMAX, QUANTIZE = 1, 6, 22, 25, 114
_POOL2D_OPTIONS, _SOFTMAX_OPTIONS = 5, 9


@dataclass
class Quant:
    scale: float
    zero_point: int


# Each 8-bit type maps real [0, 1] onto its whole range: pixels p/255 with mean 0, std 255.
UNIT = {"uint8": Quant(1 / 255, 0), "int8": Quant(1 / 255, -128)}


@dataclass
class Meta:
    """The TFLite metadata to write (None fields are left out)."""

    mean: Optional[Sequence[float]] = (0.0,)
    std: Optional[Sequence[float]] = (255.0,)
    # (file name, text, locale); the first is the labels, the others display names.
    label_files: List[Tuple[str, str, str]] = field(default_factory=lambda: [("labels.txt", "\n".join(LABELS), "")])
    output_range: Optional[Tuple[float, float]] = None
    calibration: Optional[Tuple[int, float, str]] = None  # (transform, default score, CSV text)
    score_threshold: Optional[float] = None  # ScoreThresholdingOptions.global_score_threshold
    extra_outputs: int = 0


def _vec_i32(b: flatbuffers.Builder, values: Sequence[int]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.int32))


def _vec_f32(b: flatbuffers.Builder, values: Sequence[float]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.float32))


def _vec_tables(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _table(b: flatbuffers.Builder, n: int, fields: Dict[int, Tuple[str, object]]) -> int:
    """One table: {slot: (kind, value)}, kind in off/i8/u8/i32/u32/f32 (builders force
    defaults, so every given field is written)."""
    b.StartObject(n)
    for slot, (kind, value) in sorted(fields.items()):
        if kind == "off":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "i8":
            b.PrependInt8Slot(slot, value, 0)
        elif kind == "u8":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "i32":
            b.PrependInt32Slot(slot, value, 0)
        elif kind == "u32":
            b.PrependUint32Slot(slot, value, 0)
        elif kind == "f32":
            b.PrependFloat32Slot(slot, value, 0.0)
    return b.EndObject()


def _metadata(meta: Meta) -> bytes:
    b = flatbuffers.Builder(1024)
    b.ForceDefaults(True)

    def files(entries: List[Tuple[str, int, str]]) -> int:
        offs = []
        for name, kind, locale in entries:
            f = {0: ("off", b.CreateString(name)), 2: ("i8", kind)}
            if locale:
                f[3] = ("off", b.CreateString(locale))
            offs.append(_table(b, 4, f))
        return _vec_tables(b, offs)

    in_fields: Dict[int, Tuple[str, object]] = {0: ("off", b.CreateString("image"))}
    if meta.mean is not None or meta.std is not None:
        nf: Dict[int, Tuple[str, object]] = {}
        if meta.mean is not None:
            nf[0] = ("off", _vec_f32(b, meta.mean))
        if meta.std is not None:
            nf[1] = ("off", _vec_f32(b, meta.std))
        norm = _table(b, 2, nf)
        unit = _table(b, 2, {0: ("u8", 1), 1: ("off", norm)})
        in_fields[4] = ("off", _vec_tables(b, [unit]))
    tin = _table(b, 7, in_fields)

    out_fields: Dict[int, Tuple[str, object]] = {0: ("off", b.CreateString("probability"))}
    entries = [(name, 2, locale) for name, _, locale in meta.label_files]
    units = []  # the output's process units: (options type, options table)
    if meta.calibration is not None:
        entries.append(("calibration.csv", 4, ""))
        cal = _table(b, 2, {0: ("i8", meta.calibration[0]), 1: ("f32", meta.calibration[1])})
        units.append(_table(b, 2, {0: ("u8", 2), 1: ("off", cal)}))
    if meta.score_threshold is not None:
        thr = _table(b, 1, {0: ("f32", meta.score_threshold)})
        units.append(_table(b, 2, {0: ("u8", 3), 1: ("off", thr)}))
    if units:
        out_fields[4] = ("off", _vec_tables(b, units))
    if entries:
        out_fields[6] = ("off", files(entries))
    if meta.output_range is not None:
        lo, hi = meta.output_range
        out_fields[5] = ("off", _table(b, 2, {0: ("off", _vec_f32(b, [hi])), 1: ("off", _vec_f32(b, [lo]))}))
    outs = [_table(b, 7, out_fields)]
    for i in range(meta.extra_outputs):
        outs.append(_table(b, 7, {0: ("off", b.CreateString(f"extra{i}"))}))
    sg = _table(b, 7, {2: ("off", _vec_tables(b, [tin])), 3: ("off", _vec_tables(b, outs))})
    root = _table(b, 8, {0: ("off", b.CreateString("TinyColourClassifier")), 3: ("off", _vec_tables(b, [sg]))})
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def build(
    input_type: str = "uint8",
    output_type: str = "uint8",
    softmax: bool = False,
    height: int = 8,
    width: int = 8,
    meta: Optional[Meta] = Meta(),
    input_quant: Optional[Quant] = None,
    output_quant: Optional[Quant] = None,
    two_outputs: bool = False,
) -> bytes:
    """A colour classifier's .tflite bytes (with ``meta``'s TFLite metadata and packed files)."""
    b = flatbuffers.Builder(4096)
    b.ForceDefaults(True)
    in_q = input_quant or UNIT.get(input_type)
    out_q = output_quant or UNIT.get(output_type)
    buffers: List[Optional[bytes]] = [None]  # buffer 0 is the empty sentinel
    tensors: List[int] = []
    ops: List[Tuple[int, List[int], List[int], int, int]] = []  # (opcode idx, ins, outs, opts type, opts)
    codes: List[Tuple[int, int]] = []

    def tensor(name: str, shape: Sequence[int], ttype: str, quant: Optional[Quant] = None,
               data: Optional[bytes] = None) -> int:
        qoff = 0
        if quant is not None and ttype in ("uint8", "int8"):
            sc = _vec_f32(b, [quant.scale])
            zp = b.CreateNumpyVector(np.asarray([quant.zero_point], dtype=np.int64))
            qoff = _table(b, 7, {2: ("off", sc), 3: ("off", zp)})
        buf = 0
        if data is not None:
            buffers.append(data)
            buf = len(buffers) - 1
        name_off = b.CreateString(name)
        shape_off = _vec_i32(b, shape)
        f: Dict[int, Tuple[str, object]] = {0: ("off", shape_off), 1: ("i8", _TYPES[ttype]), 3: ("off", name_off)}
        if buf:
            f[2] = ("u32", buf)
        if qoff:
            f[4] = ("off", qoff)
        tensors.append(_table(b, 8, f))
        return len(tensors) - 1

    def op(code: int, version: int, ins: List[int], outs: List[int], opts_type: int = 0, opts: int = 0) -> None:
        if (code, version) not in codes:
            codes.append((code, version))
        ops.append((codes.index((code, version)), ins, outs, opts_type, opts))

    inp = tensor("image", [1, height, width, 3], input_type, in_q)
    pooled = tensor("pooled", [1, 1, 1, 3], input_type, in_q)
    pool_opts = _table(b, 6, {0: ("i8", 1), 1: ("i32", 1), 2: ("i32", 1), 3: ("i32", width), 4: ("i32", height)})
    op(AVERAGE_POOL_2D, 2 if input_type == "int8" else 1, [inp], [pooled], _POOL2D_OPTIONS, pool_opts)
    shape = tensor("shape", [2], "int32", data=np.asarray([1, 3], np.int32).tobytes())
    flat = tensor("flat", [1, 3], input_type, in_q)
    op(RESHAPE, 1, [pooled, shape], [flat])
    last, last_type = flat, input_type
    if softmax and last_type != "float32":
        deq = tensor("dequantized", [1, 3], "float32")
        op(DEQUANTIZE, 2 if last_type == "int8" else 1, [last], [deq])
        last, last_type = deq, "float32"
    if softmax:
        sm = tensor("softmax", [1, 3], "float32")
        op(SOFTMAX, 1, [last], [sm], _SOFTMAX_OPTIONS, _table(b, 1, {0: ("f32", 1.0)}))
        last = sm
    if output_type != last_type:
        out = tensor("scores", [1, 3], output_type, out_q)
        if output_type == "float32":
            op(DEQUANTIZE, 2 if last_type == "int8" else 1, [last], [out])
        else:
            op(QUANTIZE, 1 if last_type == "float32" else 2, [last], [out])
        last = out
    outputs = [last, pooled] if two_outputs else [last]

    op_offs = []
    for idx, ins, outs, otype, opts in ops:
        f = {0: ("u32", idx), 1: ("off", _vec_i32(b, ins)), 2: ("off", _vec_i32(b, outs))}
        if otype:
            f[3] = ("u8", otype)
            f[4] = ("off", opts)
        op_offs.append(_table(b, 9, f))
    sg = _table(b, 5, {
        0: ("off", _vec_tables(b, tensors)),
        1: ("off", _vec_i32(b, [inp])),
        2: ("off", _vec_i32(b, outputs)),
        3: ("off", _vec_tables(b, op_offs)),
        4: ("off", b.CreateString("main")),
    })
    code_offs = [_table(b, 4, {0: ("i8", min(code, 127)), 2: ("i32", version), 3: ("i32", code)})
                 for code, version in codes]

    meta_index = None
    if meta is not None:
        buffers.append(_metadata(meta))
        meta_index = len(buffers) - 1
    buf_offs = []
    for data in buffers:
        if data is None:
            b.StartObject(3)
            buf_offs.append(b.EndObject())
            continue
        b.StartVector(1, len(data), 16)
        b.head = b.head - len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        vec = b.EndVector()
        buf_offs.append(_table(b, 3, {0: ("off", vec)}))
    model_fields = {
        0: ("u32", 3),
        1: ("off", _vec_tables(b, code_offs)),
        2: ("off", _vec_tables(b, [sg])),
        3: ("off", b.CreateString("pyai tests")),
        4: ("off", _vec_tables(b, buf_offs)),
    }
    if meta_index is not None:
        entry = _table(b, 2, {0: ("off", b.CreateString("TFLITE_METADATA")), 1: ("u32", meta_index)})
        model_fields[6] = ("off", _vec_tables(b, [entry]))
    b.Finish(_table(b, 8, model_fields), file_identifier=b"TFL3")
    model = bytes(b.Output())
    if meta is None:
        return model
    packed = [(name, text) for name, text, _ in meta.label_files]
    if meta.calibration is not None:
        packed.append(("calibration.csv", meta.calibration[2]))
    return model + pack(packed)


def pack(files: Sequence[Tuple[str, str]]) -> bytes:
    """A zip of ``files`` (name, text), stored, as the metadata writers append it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, text in files:
            z.writestr(name, text)
    return out.getvalue()


def repack(model: bytes, files: Sequence[Tuple[str, str]]) -> bytes:
    """The same model (flatbuffer and metadata) with other packed files: a model whose
    label file is wrong, or one relabelled to tell two models' answers apart."""
    with zipfile.ZipFile(io.BytesIO(model)) as z:
        start = min(info.header_offset for info in z.infolist())
    return model[:start] + pack(files)


def solid_jpeg(rgb: Tuple[int, int, int], width: int = 64, height: int = 48) -> bytes:
    """A JPEG frame of one colour."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, "JPEG", quality=95)
    return out.getvalue()
