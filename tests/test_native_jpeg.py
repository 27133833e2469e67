"""native_jpeg: one JPEG decoded on several cores, pixel for pixel like simplejpeg.

Skips when the extension was not built (no libjpeg-turbo headers), unless
``PYAI_REQUIRE_NATIVE_JPEG=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import gc
import io
import os
import threading
import time
from types import ModuleType

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pyai.decode import decode, jpeg_scaled_size, jpeg_splitter

from .conftest import encode, env_flag


@pytest.fixture(scope="module")
def nj() -> ModuleType:
    if env_flag("PYAI_REQUIRE_NATIVE_JPEG"):
        import native_jpeg  # an ImportError fails the test, as asked
    else:
        native_jpeg = pytest.importorskip("native_jpeg")
    if env_flag("PYAI_NO_NATIVE"):
        pytest.skip("PYAI_NO_NATIVE is set")
    return native_jpeg


def _photo(images, name="cat_720p.jpg") -> Image.Image:
    return Image.open(io.BytesIO(images[name])).convert("RGB")


def _simplejpeg(data: bytes, n: int, width: int, height: int) -> np.ndarray:
    w, h = -(-width * n // 8), -(-height * n // 8)
    out = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=w, min_height=h)
    assert out.shape[:2] == (h, w)
    return out


def _native(dec, data: bytes, n: int, width: int, height: int) -> np.ndarray:
    w, h = -(-width * n // 8), -(-height * n // 8)
    out = np.full((h, w, 3), 7, np.uint8)
    dec.decode_into(data, out)
    return out


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_sample_photos_equal_simplejpeg_at_the_pipeline_scale(nj, images, threads):
    dec = nj.JpegDecoder(threads)
    for name, data in images.items():
        if not data.startswith(b"\xff\xd8"):
            continue
        ref = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=247, min_height=247)
        out = np.empty_like(ref)
        for _ in range(3):  # the split moves as the decoder learns; the pixels must not
            dec.decode_into(data, out)
            assert np.array_equal(out, ref), (name, dec.stats())


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("size", [(1283, 721), (1920, 1080), (641, 1203)])
def test_every_scale_and_subsampling_is_bit_exact(nj, images, subsampling, size):
    im = _photo(images, "cat_1080p.jpg").resize(size)
    data = encode(im, "JPEG", quality=88, subsampling=subsampling)
    dec = nj.JpegDecoder(3)
    for n in range(1, 9):
        assert np.array_equal(_native(dec, data, n, *size), _simplejpeg(data, n, *size)), n


def test_a_720p_frame_is_split_and_the_parts_cover_every_row(nj, images):
    dec = nj.JpegDecoder(2)
    data = images["cat_720p.jpg"]
    _native(dec, data, 3, 1280, 720)
    st = dec.stats()
    assert st["threads"] == 2 and st["split_calls"] == 1
    parts = st["last_parts_ms"]
    assert len(parts) == 2
    assert parts[0][0] == 0 and parts[0][1] == parts[1][0] and parts[1][1] == 270
    # Cut at whole iMCU rows: 4:2:0 at 3/8 is 6 output rows.
    assert parts[0][1] % 6 == 0
    assert all(ms > 0 and waited >= 0 for _, _, ms, waited in parts) and parts[0][3] == 0
    for _ in range(20):
        _native(dec, data, 3, 1280, 720)
    assert 0.05 <= dec.stats()["skip_ratio"] <= 0.95


def test_grey_restart_markers_and_odd_sizes(nj, images):
    base = _photo(images, "kite_and_cold.jpg")
    cases = {
        "grey": encode(base.convert("L"), "JPEG", quality=90),
        "tiny": encode(base.resize((9, 5)), "JPEG"),
        "one-row": encode(base.resize((2000, 1)), "JPEG"),
        "tall": encode(base.resize((37, 3001)), "JPEG"),
    }
    for name, data in cases.items():
        im = Image.open(io.BytesIO(data))
        for threads in (1, 2):
            dec = nj.JpegDecoder(threads)
            for n in (1, 3, 8):
                got = _native(dec, data, n, *im.size)
                assert np.array_equal(got, _simplejpeg(data, n, *im.size)), (name, threads, n)
    # kite_and_cold.jpg and hot_dog.jpg carry restart markers (DRI).
    for name in ("kite_and_cold.jpg", "hot_dog.jpg"):
        data = images[name]
        w, h = Image.open(io.BytesIO(data)).size
        assert np.array_equal(_native(nj.JpegDecoder(2), data, 4, w, h), _simplejpeg(data, 4, w, h))


def test_progressive_is_decoded_in_one_piece(nj, images):
    data = encode(_photo(images), "JPEG", quality=85, progressive=True)
    dec = nj.JpegDecoder(2)
    assert np.array_equal(_native(dec, data, 3, 1280, 720), _simplejpeg(data, 3, 1280, 720))
    assert dec.stats()["split_calls"] == 0


def test_cmyk_is_left_to_another_decoder(nj, images):
    data = encode(_photo(images, "hot_dog.jpg").convert("CMYK"), "JPEG")
    with pytest.raises(NotImplementedError, match="CMYK"):
        _native(nj.JpegDecoder(2), data, 8, 512, 384)


def _corrupt(data: bytes, at: float) -> bytes:
    """Garbage bytes (no 0xFF, so no marker) over 2% of the entropy data at ``at``."""
    sos = data.index(b"\xff\xda")
    i = sos + int((len(data) - sos) * at)
    bad = bytes(np.random.default_rng(3).integers(0, 0xFE, 2000, dtype=np.uint8))
    return data[:i] + bad + data[i + len(bad):]


@pytest.mark.parametrize("where", ["truncated top", "truncated bottom", "garbage top", "garbage bottom"])
def test_broken_data_in_any_part_is_an_error_and_the_decoder_carries_on(nj, images, where):
    data = images["cat_720p.jpg"]
    at = 0.2 if where.endswith("top") else 0.9
    bad = data[: int(len(data) * at)] if where.startswith("truncated") else _corrupt(data, at)
    dec = nj.JpegDecoder(2)
    with pytest.raises(ValueError) as err:
        _native(dec, bad, 3, 1280, 720)
    assert "\n" not in str(err.value) and str(err.value)
    assert np.array_equal(_native(dec, data, 3, 1280, 720), _simplejpeg(data, 3, 1280, 720))


def test_bad_arguments(nj, images):
    dec = nj.JpegDecoder(2)
    data = images["cat_720p.jpg"]
    with pytest.raises(ValueError, match="no n/8 scale"):
        dec.decode_into(data, np.empty((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dec.decode_into(data, np.empty((270, 480, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        dec.decode_into(data, np.empty((270, 480, 4), np.uint8))
    with pytest.raises((TypeError, ValueError, BufferError)):
        dec.decode_into(data, np.empty((270, 480, 3), np.uint8)[:, ::2])
    ro = np.empty((270, 480, 3), np.uint8)
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        dec.decode_into(data, ro)
    with pytest.raises(TypeError):
        dec.decode_into("not bytes", np.empty((270, 480, 3), np.uint8))
    with pytest.raises(TypeError):
        dec.decode_into(data)
    with pytest.raises(ValueError):
        dec.decode_into(b"\xff\xd8\xff\xe0 not really", np.empty((270, 480, 3), np.uint8))
    with pytest.raises(ValueError):
        nj.JpegDecoder(0)
    with pytest.raises(ValueError):
        nj.JpegDecoder(nj.MAX_THREADS + 1)
    assert dec.stats()["threads"] == 2


def test_callers_on_many_threads_get_their_own_frames(nj, images):
    """One decoder shared by threads: whoever finds the helpers busy decodes in one piece."""
    dec = nj.JpegDecoder(2)
    frames = {name: images[name] for name in ("cat_720p.jpg", "cat_1080p.jpg", "kite_and_cold.jpg")}
    refs = {name: simplejpeg.decode_jpeg(d, colorspace="RGB", min_width=247, min_height=247)
            for name, d in frames.items()}
    errors = []

    def work(name):
        out = np.empty_like(refs[name])
        for _ in range(15):
            dec.decode_into(frames[name], out)
            if not np.array_equal(out, refs[name]):
                errors.append(name)

    threads = [threading.Thread(target=work, args=(name,)) for name in frames for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert dec.stats()["calls"] == 6 * 15


def _helpers() -> int:
    """Live native_jpeg helper threads of this process (they are named pyai-jpeg)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().strip() == "pyai-jpeg"
        except OSError:  # gone while we looked
            pass
    return n


def _helpers_settle(want: int) -> int:
    """The helper count once it reaches ``want`` (pthread_join returns when the thread
    is done, a moment before the kernel drops its task entry), or whatever it is after 2 s."""
    deadline = time.monotonic() + 2.0
    while (n := _helpers()) != want and time.monotonic() < deadline:
        time.sleep(0.005)
    return n


def test_freeing_a_decoder_stops_its_helpers(nj, images):
    gc.collect()  # decoders of earlier tests, freed now rather than inside the loop
    time.sleep(0.05)  # and their helpers' task entries gone
    before = _helpers()  # the session's classifiers keep theirs
    for _ in range(20):
        dec = nj.JpegDecoder(4)
        assert _helpers() == before + 3
        _native(dec, images["cat_720p.jpg"], 3, 1280, 720)
        del dec
        assert _helpers_settle(before) == before


def test_pyai_decode_with_the_splitter_equals_simplejpeg(nj, images):
    splitter = jpeg_splitter(2)
    assert splitter is not None and jpeg_splitter(1) is None
    for name, data in images.items():
        a = decode(data, (247, 247), reuse=True, splitter=splitter).copy()
        b = decode(data, (247, 247), reuse=False)
        assert np.array_equal(a, b), name
        if data.startswith(b"\xff\xd8"):
            w, h = Image.open(io.BytesIO(data)).size
            assert a.shape[1::-1] == jpeg_scaled_size(w, h, 247, 247)


def test_classifier_answers_the_same_with_and_without_the_split(nj, models_dir, labels_path, images):
    from pyai import Classifier

    from .conftest import TINY_MODEL

    # One view a frame: only such frames are split (several views already use the cores).
    kw = dict(model=str(models_dir / TINY_MODEL), labels=str(labels_path), crop_mode="aspect")
    with Classifier(decode_threads=2, **kw) as split, Classifier(decode_threads=1, **kw) as whole:
        assert split.describe()["jpeg_decoder"] == "native_jpeg, 2 threads"
        assert whole.describe()["jpeg_decoder"] == "simplejpeg"
        for name, data in images.items():
            assert split.label(data) == whole.label(data), name
        assert split.splitter.stats()["split_calls"] > 0


def test_mutated_frames_fail_or_decode_exactly_as_simplejpeg(nj, images):
    """Differential: 400 damaged 720p frames (bytes changed in the entropy data or the
    headers, cut short, garbage spliced in). Wherever strict simplejpeg decodes, the
    split decode gives its pixels; wherever it refuses, so does the split decode."""
    data = images["cat_720p.jpg"]
    sos = data.index(b"\xff\xda")
    rng = np.random.default_rng(7)
    dec = nj.JpegDecoder(2)
    outcomes = {"decoded": 0, "refused": 0}
    for it in range(400):
        b = bytearray(data)
        kind = it % 4
        if kind == 0:
            for _ in range(int(rng.integers(1, 6))):
                b[int(rng.integers(sos + 20, len(b) - 2))] = int(rng.integers(0, 256))
        elif kind == 1:
            b = b[: int(rng.integers(sos + 20, len(b) - 2))] + b"\xff\xd9"
        elif kind == 2:
            i = int(rng.integers(sos + 20, len(b) - 2))
            b = b[:i] + bytes(rng.integers(0, 255, int(rng.integers(1, 50)), dtype=np.uint8)) + b[i:]
        else:
            b[int(rng.integers(2, sos + 10))] = int(rng.integers(0, 256))
        frame = bytes(b)
        try:
            ref = simplejpeg.decode_jpeg(frame, colorspace="RGB", min_width=247, min_height=247, strict=True)
        except ValueError:
            ref = None
        out = np.empty_like(ref) if ref is not None else np.empty((270, 480, 3), np.uint8)
        try:
            dec.decode_into(frame, out)
            got = True
        except (ValueError, NotImplementedError):
            got = False
        assert got == (ref is not None), (it, kind)
        if got:
            assert np.array_equal(out, ref), (it, kind)
        outcomes["decoded" if got else "refused"] += 1
    # Both outcomes must really occur, or the test would prove nothing.
    assert outcomes["decoded"] > 50 and outcomes["refused"] > 50, outcomes
