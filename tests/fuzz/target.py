"""The fuzz target's body, without atheris: the regression test replays it too.

An input's first byte picks how the rest reaches pyai, as eKuiper or a Python
caller would hand it over (low 2 bits): raw bytes, base64 text (str), base64
through the plugin's zero-copy path (a memoryview, then ``decode_bytes``), or
the raw bytes as text (exercises the base64 parser). Bit 2 first repairs the
cheap integrity checks (PNG CRCs, WebP RIFF size, GIF trailer) so that a
mutation reaches the decoders behind them.

A finding is anything but a clean ``BadInput`` or a well-formed result: another
exception, a reason with a line break, a traceback or an object address, a
malformed result, or a call slower than ``SLOW_S``: with ``max_decode_ms`` at
200 an accepted input must not take seconds (that would be a cost-model miss).
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pyai.decode
from pyai import BadInput, Classifier
from pyai.source import b64decode

from . import crafted

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = REPO / "models" / "imagenet_labels.txt"
SLOW_S = float(os.environ.get("PYAI_FUZZ_SLOW_S", "1.5"))
MODES = 8
MAX_PIXELS = 4_000_000
MAX_DECODE_MS = 200.0


class Finding(Exception):
    """Not a crash of the interpreter, but a broken promise of pyai."""


def make_classifier() -> Classifier:
    # Small limits keep each execution fast; the checks are the same code.
    clf = Classifier(model=str(MODEL), labels=str(LABELS), threads=1,
                     max_pixels=MAX_PIXELS, max_encoded_bytes=1 << 20)
    clf.limits = pyai.decode.Limits(max_pixels=MAX_PIXELS, max_decode_ms=MAX_DECODE_MS)
    return clf


def repair(body: bytes) -> bytes:
    kind = pyai.decode.sniff(body)
    if kind == "png":
        return crafted.fix_png_crcs(body)
    if kind == "webp" and len(body) >= 8:
        return body[:4] + (len(body) - 8).to_bytes(4, "little") + body[8:]
    if kind == "gif" and not body.endswith(b";"):
        return body + b";"
    return body


def deliver(mode: int, body: bytes):
    """The payload as one of the callers would hand it to pyai."""
    if mode == 0:
        return body
    if mode == 1:
        return base64.b64encode(body).decode("ascii")
    if mode == 2:
        return memoryview(base64.b64encode(body))
    return body.decode("latin-1")


def run_one(clf: Classifier, data: bytes) -> str:
    """One input; returns "ok" or "bad" (a clean BadInput), raises on a finding."""
    if not data:
        return "bad"
    mode, body = data[0] % MODES, data[1:]
    if mode & 4:
        body = repair(body)
    mode &= 3
    payload = deliver(mode, body)
    t0 = time.perf_counter()
    outcome = "ok"
    try:
        if mode == 2:
            result = clf.label_frame(clf.decode_bytes(b64decode(payload, clf.config.max_encoded_bytes)))
        else:
            result = clf.label(payload)
    except BadInput as exc:
        outcome = "bad"
        reason = str(exc)
        if not reason or "\n" in reason or "Traceback" in reason or " at 0x" in reason:
            raise Finding(f"bad reason text: {reason!r}") from None
    else:
        if not isinstance(result, list) or not result or not all(
            isinstance(r, dict) and set(r) == {"confidence", "label"} for r in result
        ):
            raise Finding(f"malformed result {result!r:.200}")
    elapsed = time.perf_counter() - t0
    if elapsed > SLOW_S:
        raise Finding(f"slow input: {elapsed:.2f} s for {len(body)} bytes (mode {mode})")
    return outcome
