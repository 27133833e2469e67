"""Replays the JPEG walker's fuzz corpus (tests/fuzz/dcsig_corpus/) and every
crash it ever found (tests/fuzz/dcsig_crashes/) through native_dcsig, as the
libFuzzer target (tests/fuzz/dcsig_fuzz.c) walks them: each input is refused
cleanly or walked to finite cell means, and a frame the walker walks to the end
is one the plugin's decoders (the split one and simplejpeg) accept. Under
native_preproc/sanitize.sh this runs with ASan and UBSan."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pytest
from PIL import Image

from pyai.decode import jpeg_splitter

from ..dcsig_reference import plugin_decoders_accept

native_dcsig = pytest.importorskip("native_dcsig")

HERE = Path(__file__).resolve().parent
INPUTS = sorted(p for d in ("dcsig_corpus", "dcsig_crashes") for p in (HERE / d).iterdir() if p.is_file())


def _size(data: bytes) -> Optional[Tuple[int, int]]:
    try:
        return Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - any header Pillow cannot read: no size
        return None


def _box(opt: int, w: int, h: int) -> Tuple[int, int, int, int]:
    """The target's box for option bits 3-4 (tests/fuzz/dcsig_fuzz.c)."""
    kind = (opt >> 3) & 3
    if kind == 1:
        x0, y0 = w // 4, h // 4
        return x0, y0, x0 + (w + 1) // 2, y0 + (h + 1) // 2
    if kind == 2:
        return 0, 0, (w + 1) // 2, (h + 1) // 2
    if kind == 3 and w > 2 and h > 2:
        return 1, 1, w - 1, h - 1
    return 0, 0, w, h


def test_corpus_is_small_and_has_the_crashes():
    assert len(INPUTS) >= 50
    assert sum(p.stat().st_size for p in INPUTS) < 4 << 20
    assert any(p.parent.name == "dcsig_crashes" for p in INPUTS)


def test_every_input_is_refused_or_walked_and_nothing_libjpeg_refuses_is_walked():
    splitter = jpeg_splitter(2)
    walked = refused = 0
    for path in INPUTS:
        raw = path.read_bytes()
        if len(raw) < 3:
            continue
        opt, data = raw[0], raw[1:]
        size = _size(data)
        box = _box(opt, *size) if size else (0, 0, 1, 1)
        answer = bool(opt & 4)
        stop = (lambda cells, rows, cols: answer) if opt & 2 else None
        try:
            sig = native_dcsig.cell_means(data, box, 4 + 4 * (opt >> 5), stop, 2, 2 if opt & 1 else 1)
        except (ValueError, NotImplementedError):
            refused += 1
            continue
        if sig is None:
            continue  # stopped: a changed frame, and the decoder decides on it
        walked += 1
        assert np.isfinite(sig).all(), path.name
        assert plugin_decoders_accept(data, splitter, (64, 64)), f"{path.name}: walked, but the plugin's decoders refuse it"
    assert walked > 0 and refused > 0
