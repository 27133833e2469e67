"""What a .tflite file says about itself: its TFLite metadata and the graph around its output.

Read with the ``flatbuffers`` runtime (Google's, maintained, pure Python, already
a dependency of ``ai-edge-litert``: no extra footprint on an ARM board) against the
public schemas, field by field: ``tensorflow/lite/schema/schema.fbs`` for the
model (``Model.metadata`` names the buffer ``TFLITE_METADATA``) and
``tensorflow_lite_support/metadata/metadata_schema.fbs`` for the metadata. The
``tflite-support`` package that ships generated readers is unmaintained (last
release 2023, no wheels for current Pythons) and pulls in much more than this needs.

Associated files (labels, score calibration) are packed in the model file as a
zip archive appended to the flatbuffer, as the metadata writers of TFLite Model
Maker and MediaPipe Model Maker do.
"""

from __future__ import annotations

import io
import logging
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from flatbuffers import number_types as N
from flatbuffers.table import Table

from .errors import ModelError

log = logging.getLogger(__name__)

METADATA_NAME = "TFLITE_METADATA"
# AssociatedFileType
TENSOR_AXIS_LABELS = 2
TENSOR_AXIS_SCORE_CALIBRATION = 4
# ProcessUnitOptions union members
_NORMALIZATION = 1
_SCORE_CALIBRATION = 2
_SCORE_THRESHOLDING = 3
# ScoreTransformationType
TRANSFORMS = ("identity", "log", "inverse_logistic")
# BuiltinOperator codes the output's producer is checked against.
_SOFTMAX, _LOGISTIC = 25, 14
_SHAPE_ONLY = {22: "RESHAPE", 43: "SQUEEZE", 6: "DEQUANTIZE", 114: "QUANTIZE"}


class _T:
    """One flatbuffer table; fields by their index in the schema (vtable slot 4 + 2*i)."""

    __slots__ = ("t",)

    def __init__(self, buf: bytes, pos: int):
        self.t = Table(buf, pos)

    def _o(self, i: int) -> int:
        return self.t.Offset(4 + 2 * i)

    def scalar(self, i: int, flags, default=0):
        o = self._o(i)
        return self.t.Get(flags, o + self.t.Pos) if o else default

    def string(self, i: int) -> Optional[str]:
        o = self._o(i)
        return self.t.String(o + self.t.Pos).decode("utf-8", "replace") if o else None

    def table(self, i: int) -> Optional["_T"]:
        o = self._o(i)
        return _T(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, i: int) -> List["_T"]:
        o = self._o(i)
        if not o:
            return []
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return [_T(self.t.Bytes, self.t.Indirect(start + 4 * k)) for k in range(n)]

    def scalars(self, i: int, flags) -> list:
        o = self._o(i)
        if not o:
            return []
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return [self.t.Get(flags, start + k * flags.bytewidth) for k in range(n)]

    def raw(self, i: int) -> bytes:
        o = self._o(i)
        if not o:
            return b""
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return bytes(self.t.Bytes[start:start + n])


def _root(buf: bytes) -> _T:
    if len(buf) < 8:
        raise ModelError("not a flatbuffer: too short")
    return _T(buf, N.UOffsetTFlags.py_type(int.from_bytes(buf[0:4], "little")))


@dataclass(frozen=True)
class AssociatedFile:
    name: str
    type: int
    locale: str = ""


@dataclass(frozen=True)
class Calibration:
    """Sigmoid score calibration (ScoreCalibrationOptions + its CSV file)."""

    transform: str
    default_score: float
    # One row per class: (scale, slope, offset, min_score) or None (-> default_score).
    params: Tuple[Optional[Tuple[float, float, float, Optional[float]]], ...]


@dataclass
class ModelMetadata:
    """The parts of a classifier's metadata pyai uses; None where the metadata says nothing."""

    name: str = ""
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    # The output's label files (TENSOR_AXIS_LABELS), in metadata order.
    label_files: List[AssociatedFile] = field(default_factory=list)
    output_min: Optional[float] = None
    output_max: Optional[float] = None
    score_threshold: Optional[float] = None
    # ScoreCalibrationOptions: (transform, default_score, CSV file name); read() loads the file.
    calibration_options: Optional[Tuple[str, float, str]] = None
    calibration: Optional[Calibration] = None
    input_count: int = 0
    output_count: int = 0


@dataclass
class GraphFacts:
    """What the graph itself says about the classifier's output."""

    # "SOFTMAX"/"LOGISTIC" when the output is produced by one (through shape-only ops).
    output_activation: Optional[str] = None


def _float_tuple(values: list) -> Optional[Tuple[float, ...]]:
    return tuple(float(v) for v in values) if values else None


def _metadata_buffer(model: _T) -> Optional[bytes]:
    buffers = model.tables(4)
    for entry in model.tables(6):
        if entry.string(0) == METADATA_NAME:
            idx = entry.scalar(1, N.Uint32Flags)
            if idx >= len(buffers):
                raise ModelError(f"metadata names buffer {idx}, the model has {len(buffers)}")
            buf = buffers[idx]
            data = buf.raw(0)
            if not data:
                # Large models keep buffers outside the flatbuffer (offset, size from the file start).
                off, size = buf.scalar(1, N.Uint64Flags), buf.scalar(2, N.Uint64Flags)
                data = bytes(buf.t.Bytes[off:off + size]) if size else b""
            return data or None
    return None


def _files(table: _T, i: int) -> List[AssociatedFile]:
    return [AssociatedFile(f.string(0) or "", f.scalar(2, N.Int8Flags), f.string(3) or "") for f in table.tables(i)]


def _parse_metadata(data: bytes) -> ModelMetadata:
    root = _root(data)
    meta = ModelMetadata(name=root.string(0) or "")
    subgraphs = root.tables(3)
    if not subgraphs:
        return meta
    sg = subgraphs[0]
    inputs, outputs = sg.tables(2), sg.tables(3)
    meta.input_count, meta.output_count = len(inputs), len(outputs)
    if inputs:
        for unit in inputs[0].tables(4):
            if unit.scalar(0, N.Uint8Flags) == _NORMALIZATION and unit.table(1) is not None:
                norm = unit.table(1)
                meta.mean = _float_tuple(norm.scalars(0, N.Float32Flags))
                meta.std = _float_tuple(norm.scalars(1, N.Float32Flags))
    if outputs:
        out = outputs[0]
        files = _files(out, 6)
        meta.label_files = [f for f in files if f.type == TENSOR_AXIS_LABELS]
        stats = out.table(5)
        if stats is not None:
            hi, lo = stats.scalars(0, N.Float32Flags), stats.scalars(1, N.Float32Flags)
            meta.output_max = float(max(hi)) if hi else None
            meta.output_min = float(min(lo)) if lo else None
        for unit in out.tables(4):
            kind, options = unit.scalar(0, N.Uint8Flags), unit.table(1)
            if options is None:
                continue
            if kind == _SCORE_THRESHOLDING:
                meta.score_threshold = float(options.scalar(0, N.Float32Flags, 0.0))
            elif kind == _SCORE_CALIBRATION:
                cal_files = [f.name for f in files if f.type == TENSOR_AXIS_SCORE_CALIBRATION]
                transform = options.scalar(0, N.Int8Flags)
                if not 0 <= transform < len(TRANSFORMS):
                    raise ModelError(f"unknown score transformation {transform} in the model's metadata")
                if not cal_files:
                    raise ModelError("the model's metadata asks for score calibration but names no calibration file")
                meta.calibration_options = (
                    TRANSFORMS[transform], float(options.scalar(1, N.Float32Flags, 0.0)), cal_files[0])
    return meta


def _graph_facts(model: _T) -> GraphFacts:
    facts = GraphFacts()
    subgraphs = model.tables(2)
    if not subgraphs:
        return facts
    sg = subgraphs[0]
    outputs = sg.scalars(2, N.Int32Flags)
    if not outputs:
        return facts
    codes = []
    for code in model.tables(1):
        codes.append(max(code.scalar(0, N.Int8Flags), code.scalar(3, N.Int32Flags)))
    producer = {}
    for op in sg.tables(3):
        for t in op.scalars(2, N.Int32Flags):
            producer[t] = op
    tensor, seen = outputs[0], 0
    while tensor in producer and seen < 16:
        seen += 1
        op = producer[tensor]
        idx = op.scalar(0, N.Uint32Flags)
        code = codes[idx] if idx < len(codes) else -1
        if code == _SOFTMAX:
            facts.output_activation = "SOFTMAX"
            break
        if code == _LOGISTIC:
            facts.output_activation = "LOGISTIC"
            break
        ins = op.scalars(1, N.Int32Flags)
        if code not in _SHAPE_ONLY or not ins:
            break
        tensor = ins[0]
    return facts


def _parse_calibration(text: str, name: str) -> Tuple[Optional[Tuple[float, float, float, Optional[float]]], ...]:
    rows: List[Optional[Tuple[float, float, float, Optional[float]]]] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = [p.strip() for p in line.split(",")] if line.strip() else []
        if not parts:
            rows.append(None)
            continue
        if len(parts) not in (3, 4):
            raise ModelError(f"score calibration file {name} line {n}: expected 0, 3 or 4 values, got {len(parts)}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ModelError(f"score calibration file {name} line {n}: not numbers: {line!r}") from None
        rows.append((values[0], values[1], values[2], values[3] if len(values) == 4 else None))
    return tuple(rows)


class PackedFiles:
    """The zip archive appended to a model file (its associated files), if any."""

    def __init__(self, content: bytes):
        self._zip: Optional[zipfile.ZipFile] = None
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(content))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError):
            pass

    def names(self) -> List[str]:
        return self._zip.namelist() if self._zip is not None else []

    def text(self, name: str) -> str:
        if self._zip is None or name not in self._zip.namelist():
            raise ModelError(f"the model's metadata names {name!r}, which is not packed in the model file")
        try:
            return self._zip.read(name).decode("utf-8")
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError, EOFError, zlib.error,
                NotImplementedError) as exc:  # NotImplementedError: a compression zipfile lacks
            raise ModelError(f"cannot read {name!r} packed in the model file: {exc}") from None


@dataclass
class ModelFile:
    """A .tflite file read once: its metadata (None if it has none), graph facts and packed files."""

    metadata: Optional[ModelMetadata]
    graph: GraphFacts
    files: PackedFiles


def read(content: bytes) -> ModelFile:
    """Parse a .tflite file's bytes. Raises ModelError for a metadata that is there but broken."""
    if content[4:8] != b"TFL3":
        raise ModelError("not a TFLite model (no TFL3 file identifier)")
    try:
        model = _root(content)
        graph = _graph_facts(model)
        data = _metadata_buffer(model)
        meta = _parse_metadata(data) if data else None
    # A truncated or corrupt flatbuffer: offsets past the end (struct.error, IndexError),
    # numbers out of their type's range (flatbuffers raises TypeError).
    except (IndexError, ValueError, OverflowError, struct.error, TypeError) as exc:
        raise ModelError(f"cannot read the model's flatbuffer or metadata: {exc}") from None
    files = PackedFiles(content)
    if meta is not None and meta.calibration_options is not None:
        transform, default, name = meta.calibration_options
        meta.calibration = Calibration(transform, default, _parse_calibration(files.text(name), name))
    return ModelFile(meta, graph, files)
