"""native_dcsig: cell means of a JPEG frame from its DC coefficients.

Checked against libjpeg itself: Pillow's 1/8-scale decode ("draft") gives one
value per 8x8 block that is the block's DC mean, rounded, so the cell means built
from it must match the walker's to within half a grey level; the walk on two
cores must equal the walk on one, bit for bit, with and without restart markers;
and whatever the plugin's decoder refuses, the walker refuses too.
"""

from __future__ import annotations

import io
import os
import random
from typing import Tuple

import numpy as np
import pytest
from PIL import Image

from pyai.decode import jpeg_splitter

from .dcsig_reference import cell_means_from_draft, plugin_decoders_accept

if os.environ.get("PYAI_REQUIRE_NATIVE", "").strip().lower() in ("1", "true", "yes", "on"):
    import native_dcsig  # CI builds it: an ImportError here fails the run, as asked
else:
    native_dcsig = pytest.importorskip("native_dcsig")


def _jpeg(rgb: np.ndarray, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", **save)
    return out.getvalue()


def _photo(images, name: str, size: Tuple[int, int] | None = None) -> np.ndarray:
    im = Image.open(io.BytesIO(images[name])).convert("RGB")
    if size is not None:
        im = im.resize(size, Image.BILINEAR)
    return np.asarray(im)


@pytest.mark.parametrize("kind", ["420", "444", "grey", "restart rows", "restart blocks"])
def test_cell_means_are_libjpegs_block_means(images, kind):
    rgb = _photo(images, "cat_720p.jpg")
    save = {"quality": 85, "subsampling": 0 if kind == "444" else 2}
    if kind == "grey":
        rgb = np.asarray(Image.fromarray(rgb).convert("L"))
    elif kind == "restart rows":
        save["restart_marker_rows"] = 1
    elif kind == "restart blocks":
        save["restart_marker_blocks"] = 7
    data = _jpeg(rgb, **save)
    box = (100, 45, 1180, 675)
    got = native_dcsig.cell_means(data, box)
    assert got.shape == (16, 16, 3) and got.dtype == np.float32
    want = cell_means_from_draft(data, box, 16, 16)
    # libjpeg rounds each block's mean to a whole grey level (and clamps it).
    assert np.abs(got - want).max() < 0.75
    assert np.abs(got - want).mean() < 0.2


@pytest.mark.parametrize("name", ["cat_720p.jpg", "cat_1080p.jpg", "parrot.jpg", "hot_dog.jpg"])
@pytest.mark.parametrize("restart", [None, 1, 3])
def test_two_cores_give_the_same_means_as_one(images, name, restart):
    data = images[name]
    if restart is not None:
        data = _jpeg(_photo(images, name), quality=90, restart_marker_rows=restart)
    w, h = Image.open(io.BytesIO(data)).size
    box = (0, 0, w, h)
    before = native_dcsig.stats()["split"]
    one = native_dcsig.cell_means(data, box, threads=1)
    for _ in range(30):
        np.testing.assert_array_equal(native_dcsig.cell_means(data, box, threads=2), one)
        if native_dcsig.stats()["split"] > before + 2:
            break
    # The second core's MCUs were used (a helper woken too late on a busy machine
    # is not met, and the walk is done on one core: on a loaded machine that may
    # happen every time, and then there was nothing to compare).
    if native_dcsig.stats()["split"] == before:
        pytest.skip("the helper thread was never met (busy machine): no two-core walk to compare")


def test_the_stop_function_is_asked_once_about_the_same_rows_on_one_core_or_two(images):
    cat = _jpeg(_photo(images, "cat_720p.jpg"), quality=85)
    box = (0, 0, 1280, 720)
    whole = native_dcsig.cell_means(cat, box)
    for threads in (1, 2, 2, 2):
        asked = []

        def stop(cells, rows, cols):
            asked.append((np.frombuffer(cells, np.float32).reshape(rows, cols, 3).copy(), rows, cols))
            return False

        got = native_dcsig.cell_means(cat, box, stop=stop, stop_rows=3, threads=threads)
        np.testing.assert_array_equal(got, whole)
        assert len(asked) == 1 and asked[0][1:] == (3, 16)
        np.testing.assert_array_equal(asked[0][0], whole[:3])
    stopped = native_dcsig.stats()["stopped"]
    assert native_dcsig.cell_means(cat, box, stop=lambda cells, rows, cols: True) is None
    assert native_dcsig.stats()["stopped"] == stopped + 1
    # Not asked when no rows would be left to walk.
    assert native_dcsig.cell_means(cat, box, stop=lambda *a: True, stop_rows=16) is not None

    def boom(cells, rows, cols):
        raise RuntimeError("from the stop function")

    with pytest.raises(RuntimeError, match="from the stop function"):
        native_dcsig.cell_means(cat, box, stop=boom, threads=2)
    with pytest.raises(TypeError):
        native_dcsig.cell_means(cat, box, stop=3)


def test_the_grid_shrinks_for_small_regions_and_gives_up_under_four_cells(images):
    data = _jpeg(_photo(images, "cat_720p.jpg", (320, 176)), quality=85)  # 4:2:0, 16 px chroma blocks
    assert native_dcsig.cell_means(data, (0, 0, 320, 176)).shape == (11, 16, 3)
    with pytest.raises(NotImplementedError):
        native_dcsig.cell_means(data, (0, 0, 320, 60))
    with pytest.raises(ValueError, match="not inside"):
        native_dcsig.cell_means(data, (0, 0, 321, 176))


def test_jpegs_it_does_not_read_are_not_implemented(images):
    rgb = _photo(images, "cat_720p.jpg")
    progressive = _jpeg(rgb, quality=85, progressive=True)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, "JPEG")
    for data in (progressive, cmyk.getvalue()):
        with pytest.raises(NotImplementedError):
            native_dcsig.cell_means(data, (0, 0, 1280, 720))
    with pytest.raises(ValueError):
        native_dcsig.cell_means(b"\x89PNG not a jpeg", (0, 0, 1, 1))


def test_whatever_the_plugins_decoder_refuses_the_walker_refuses(images):
    """Mutants of a camera frame (bytes flipped, cut out, repeated, markers put in,
    in the headers and in the entropy-coded data): when either of the plugin's
    decoders (the split one and simplejpeg) refuses one, cell_means raises too,
    so the gate can never answer a frame that does not decode."""
    splitter = jpeg_splitter(2)
    base = _jpeg(_photo(images, "cat_720p.jpg"), quality=80)
    rst = _jpeg(_photo(images, "cat_720p.jpg"), quality=80, restart_marker_rows=2)
    rng = random.Random(13)
    refused = walked_refused = 0
    for i in range(1500):
        data = bytearray(base if i % 2 else rst)
        scan = data.index(b"\xff\xda")
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(2, len(data) - 2) if rng.random() < 0.8 else rng.randrange(2, scan + 20)
            op = rng.randrange(5)
            if op == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[at: at + rng.randint(1, 64)]
            elif op == 2:
                data[at:at] = data[at: at + rng.randint(1, 64)]
            elif op == 3:
                data[at:at] = bytes([0xFF, rng.choice([0xD0, 0xD3, 0xD7, 0xD9, 0xC4, 0x00, 0xFF])])
            else:
                data[at] = rng.randrange(256)
        data = bytes(data)
        if plugin_decoders_accept(data, splitter, (256, 256)):
            continue
        refused += 1
        w, h = 1280, 720
        try:
            native_dcsig.cell_means(data, (0, 0, w, h))
        except (ValueError, NotImplementedError):
            walked_refused += 1
        else:
            pytest.fail(f"mutant {i} refused by the decoder but walked: {data[:40]!r}...")
    assert refused > 100 and walked_refused == refused


def _segment(data: bytes, marker: int) -> int:
    """Offset of the first segment with this marker (its 0xFF)."""
    p = 2
    while data[p + 1] != marker:
        p += 2 + int.from_bytes(data[p + 2:p + 4], "big")
    return p


def test_header_faults_libjpeg_refuses_are_refused(images):
    """What a hand-run of 8,000 mutants found the walker taking that libjpeg
    refuses (11 of them): a DC table symbol over 15, a marker libjpeg does not
    know, a frame header of the wrong length; each must be a ValueError, like the
    decoder's. (With those fixed, 24,000 more found nothing.)"""
    splitter = jpeg_splitter(2)
    good = _jpeg(_photo(images, "cat_720p.jpg", (640, 360)), quality=80)
    dht = _segment(good, 0xC4)
    dc_symbol = bytearray(good)
    dc_symbol[dht + 4 + 17] = 0x40  # the first DC table's first symbol: category 64
    unknown = good[:2] + b"\xff\xa7\x00\x04\x00\x00" + good[2:]
    sof = _segment(good, 0xC0)
    long_sof = bytearray(good)
    long_sof[sof + 3] += 1
    long_sof[sof + 4 + int.from_bytes(good[sof + 2:sof + 4], "big") - 2:sof + 4 + int.from_bytes(good[sof + 2:sof + 4], "big") - 2] = b"\x00"
    for bad in (bytes(dc_symbol), unknown, bytes(long_sof)):
        assert not plugin_decoders_accept(bad, splitter, (256, 256))
        with pytest.raises(ValueError):
            native_dcsig.cell_means(bad, (0, 0, 640, 360))
