"""pyai.resize and the native_preproc C extension.

The reference is Pillow's ``Image.resize(size, BILINEAR)``; the C path and
the NumPy path must agree with it (uint8, within 1 LSB) and with each other.
Tests that need the extension get it from the ``native`` fixture, which
skips when it is not installed, unless ``PYAI_REQUIRE_NATIVE=1`` makes a
missing extension a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from pyai import resize as R

from .conftest import env_flag as _flag

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "images"
PHOTOS = (
    sorted(p for p in IMAGES.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".bmp", ".png"))
    if IMAGES.is_dir()
    else []
)

Resize = Callable[..., None]
OUT_DTYPES = [np.uint8, np.int8, np.float32]


@pytest.fixture(scope="module")
def native() -> ModuleType:
    if _flag("PYAI_REQUIRE_NATIVE"):
        import native_preproc  # an ImportError here fails the test, as asked
    else:
        native_preproc = pytest.importorskip("native_preproc")
    if not hasattr(native_preproc, "resize_into"):
        # Run from the repo root without the extension installed, the
        # native_preproc/ source folder imports as a namespace package.
        if _flag("PYAI_REQUIRE_NATIVE"):
            pytest.fail(f"native_preproc is not the built extension: {native_preproc!r}")
        pytest.skip("native_preproc extension is not installed")
    return native_preproc


@pytest.fixture(params=["numpy", "native"])
def impl(request: pytest.FixtureRequest) -> Resize:
    if request.param == "numpy":
        return R.resize_into_numpy
    return request.getfixturevalue("native").resize_into


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradients, a wave and mild noise: closer to a photo than pure noise,
    so a wrong window or weight shows as a bias rather than drowning."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([255 * xx / max(w - 1, 1), 255 * yy / max(h - 1, 1), 127 + 60 * np.sin(xx / 7 + yy / 5)], -1)
    img = base + rng.normal(0, 20, base.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def pillow_resize(src: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR))


def run(fn: Resize, src: np.ndarray, h: int, w: int, dtype: Any = np.uint8, **kw: float) -> np.ndarray:
    dst = np.zeros((h, w, 3), dtype)
    fn(src, dst, **kw)
    return dst


def maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def float_tolerance(std: float) -> float:
    """C vs NumPy for float32 dst: one intermediate LSB (a near-tie rounded
    apart) scaled by a weight <= 1, plus float32 noise on values up to 255."""
    return max(1 / abs(std) + 1e-6, (1 + 1e-4) / abs(std))


def rare(mask: np.ndarray) -> bool:
    """At most 1% of the elements (plus a few, for tiny outputs)."""
    return int(np.count_nonzero(mask)) <= 3 + 0.01 * mask.size


# (H, W, h, w): down, up, identity, 1x1 both ways, extreme aspect, odd, mixed.
SIZES: list[tuple[int, int, int, int]] = [
    (1, 1, 1, 1),
    (1, 1, 224, 224),
    (224, 224, 1, 1),
    (224, 224, 224, 224),
    (360, 640, 224, 224),
    (720, 1280, 224, 224),
    (480, 640, 300, 300),
    (5, 3000, 9, 7),
    (3000, 5, 7, 9),
    (2, 3, 1, 1),
    (3, 3, 224, 224),
    (13, 17, 5, 3),
    (17, 13, 31, 29),
    (100, 1, 7, 1),
    (1, 100, 1, 7),
    (1, 1000, 3, 2),
    (9, 7, 5, 11),
    (31, 1023, 17, 513),
    (64, 48, 128, 128),
    (299, 299, 224, 224),
    (7, 5, 7, 5),
    (4, 6, 4, 3),
    # tall downscales: Pillow >= 13 filters vertically first
    (929, 512, 224, 224),
    (640, 360, 224, 224),
    (300, 100, 60, 20),
    (1000, 300, 100, 299),
    (10, 3, 1, 2),
    (300, 300, 100, 200),  # exactly at the boundary: still horizontal first
    (120, 200, 50, 200),  # height only
    (120, 200, 120, 60),  # width only
]
_rng = np.random.default_rng(20240601)
SIZES += [tuple(int(v) for v in _rng.integers(1, 300, 4)) for _ in range(16)]  # type: ignore[misc]

NORMS = [(127.5, 127.5), (0.0, 1.0), (0.0, 255.0), (123.675, 58.395)]


# -- C vs NumPy ------------------------------------------------------------------------


@pytest.mark.parametrize("H,W,h,w", SIZES)
def test_native_matches_numpy_random(native: ModuleType, H: int, W: int, h: int, w: int) -> None:
    for seed, make in enumerate((rand_image, smooth_image)):
        src = make(H, W, seed)
        for dtype in (np.uint8, np.int8):
            c = run(native.resize_into, src, h, w, dtype)
            n = run(R.resize_into_numpy, src, h, w, dtype)
            assert maxdiff(c, n) <= 1, (dtype, seed)
            # Only float summation order differs: a 1-LSB split needs a near-tie.
            assert rare(c != n), (dtype, seed)
        for mean, std in NORMS:
            c = run(native.resize_into, src, h, w, np.float32, mean=mean, std=std)
            n = run(R.resize_into_numpy, src, h, w, np.float32, mean=mean, std=std)
            assert maxdiff(c, n) <= float_tolerance(std), (mean, std, seed)
            # Beyond float noise only where the intermediate rounding tied.
            assert rare(np.abs(c.astype(np.float64) - n) * abs(std) > 0.01), (mean, std, seed)


# -- both vs Pillow --------------------------------------------------------------------


@pytest.mark.parametrize("H,W,h,w", SIZES)
def test_matches_pillow_bilinear(impl: Resize, H: int, W: int, h: int, w: int) -> None:
    for seed, make in enumerate((rand_image, smooth_image)):
        src = make(H, W, seed)
        assert maxdiff(run(impl, src, h, w), pillow_resize(src, h, w)) <= 1, seed


@pytest.mark.parametrize("make", [rand_image, smooth_image])
def test_pillow_agreement_is_close_not_just_within_one(impl: Resize, make: Callable[..., np.ndarray]) -> None:
    # Same windows, weights and intermediate rounding as Pillow: only its
    # fixed-point weights differ, which matters at near-ties alone. (Without
    # the intermediate rounding ~15% of pixels would be 1 LSB off.)
    for H, W, h, w in [
        (360, 640, 224, 224),
        (338, 507, 224, 224),
        (64, 48, 128, 96),
        (640, 360, 224, 224),
        (929, 512, 224, 224),
        (300, 100, 60, 20),
    ]:
        src = make(H, W, 3)
        out, ref = run(impl, src, h, w), pillow_resize(src, h, w)
        assert rare(out != ref), (H, W, h, w)


# -- a region of the source (box): the crop fused into the resize ------------------------

# (H, W, h, w, box): the crops pyai makes of 16:9 frames (centre fraction, the
# model's aspect), tall and wide ones, fractional edges (all exact in float32,
# which is how Pillow keeps its box), boxes on an edge, upscaled boxes, and
# boxes whose spans fall on the vertical-first boundary.
BOXES: list[tuple[int, int, int, int, tuple[float, float, float, float]]] = [
    (270, 480, 224, 224, (105, 0, 375, 270)),  # the model's aspect, whole height
    (270, 480, 224, 224, (76.5, 16.875, 403.5, 253.125)),  # that times 0.875 of a 16:9 frame
    (270, 480, 224, 224, (30, 16.875, 450, 253.125)),  # centre 0.875 of each side
    (360, 640, 224, 224, (0, 0, 640, 360)),  # the whole frame, given explicitly
    (338, 507, 224, 224, (0.25, 0.5, 506.75, 337.5)),
    (929, 512, 224, 224, (0, 208.5, 512, 720.5)),  # a tall frame's square: vertical first (image sizes decide)
    (900, 300, 100, 100, (0, 0, 300, 300)),  # vertical first though the box is square
    (600, 100, 50, 90, (10, 20, 90, 580)),
    (300, 300, 100, 200, (0, 0, 300, 300)),
    (100, 100, 100, 100, (10, 10, 90, 90)),  # an upscaled crop
    (50, 60, 200, 210, (5.25, 3.5, 40, 47)),
    (120, 200, 120, 60, (0, 5, 200, 115)),  # height unchanged, but cropped: both passes round
    (120, 200, 50, 200, (0, 0, 200, 120)),
    (40, 40, 3, 5, (39, 0, 40, 40)),  # one column at the right edge
    (40, 40, 5, 3, (0, 39.5, 40, 40)),  # half a row at the bottom
]
_rng_box = np.random.default_rng(20261201)
for _ in range(12):
    _H, _W, _h, _w = (int(v) for v in _rng_box.integers(2, 300, 4))
    _x = np.sort(_rng_box.integers(0, 8 * _W + 1, 2)) / 8.0
    _y = np.sort(_rng_box.integers(0, 8 * _H + 1, 2)) / 8.0
    if _x[0] < _x[1] and _y[0] < _y[1]:
        BOXES.append((_H, _W, _h, _w, (float(_x[0]), float(_y[0]), float(_x[1]), float(_y[1]))))


def pillow_resize_box(src: np.ndarray, h: int, w: int, box: tuple[float, ...]) -> np.ndarray:
    return np.asarray(Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR, box=box))


@pytest.mark.parametrize("H,W,h,w,box", BOXES)
def test_box_matches_pillow(impl: Resize, H: int, W: int, h: int, w: int, box: tuple[float, ...]) -> None:
    # Upscaling pure noise carries a first-pass near-tie into several output
    # pixels of the second pass, with weights near 1: 2 LSB there, as without
    # a box (80x80 -> 100x100 of noise is 2 LSB off Pillow too).
    upscale = (box[2] - box[0]) < w and (box[3] - box[1]) < h
    for seed, make in enumerate((rand_image, smooth_image)):
        src = make(H, W, seed)
        out, ref = run(impl, src, h, w, box=box), pillow_resize_box(src, h, w, box)
        assert maxdiff(out, ref) <= (2 if upscale and make is rand_image else 1), seed


@pytest.mark.parametrize("make", [rand_image, smooth_image])
def test_box_agreement_with_pillow_is_close(impl: Resize, make: Callable[..., np.ndarray]) -> None:
    # The downscaling crops pyai makes: same windows, weights and rounding as
    # Pillow's box, so only near-ties of its fixed-point weights differ. Box
    # edges on half pixels make exact ties of the intermediate rounding more
    # common: for the tall square, a float64 evaluation of the same formula
    # differs from Pillow in 1.4% of the values and from pyai in 1.1%, hence
    # 2% here. A window off by one pixel, the wrong pass order (18%), or the
    # crop done by copying (windows clamped at the crop's edge instead of
    # reading past it) shows up far above this.
    for H, W, h, w, box in BOXES[:7]:
        src = make(H, W, 3)
        out, ref = run(impl, src, h, w, box=box), pillow_resize_box(src, h, w, box)
        assert np.count_nonzero(out != ref) <= 3 + 0.02 * out.size, (H, W, h, w, box)


@pytest.mark.parametrize("H,W,h,w,box", BOXES)
def test_box_native_matches_numpy(native: ModuleType, H: int, W: int, h: int, w: int, box: tuple[float, ...]) -> None:
    # An upscale by a round ratio (80 -> 100 px: weights 0.1, 0.3, 0.5...) makes
    # exact ties (v + 0.5) in the first pass, which float sums in another order
    # (NumPy's BLAS against C) round apart: about 1% of the values for 80x80 ->
    # 100x100 with or without a box (0.96% of noise without, 1.00% with), a little
    # more under tox -e sanitize. For upscaled boxes only the size of a
    # difference is checked.
    upscale = (box[2] - box[0]) < w and (box[3] - box[1]) < h
    for seed, make in enumerate((rand_image, smooth_image)):
        src = make(H, W, seed)
        for dtype in (np.uint8, np.int8):
            c = run(native.resize_into, src, h, w, dtype, box=box)
            n = run(R.resize_into_numpy, src, h, w, dtype, box=box)
            assert maxdiff(c, n) <= 1, (dtype, seed)
            if not upscale:
                assert rare(c != n), (dtype, seed)
        c = run(native.resize_into, src, h, w, np.float32, box=box)
        n = run(R.resize_into_numpy, src, h, w, np.float32, box=box)
        assert maxdiff(c, n) <= float_tolerance(127.5), seed


@pytest.mark.parametrize("H,W,h,w", [(360, 640, 224, 224), (929, 512, 224, 224), (120, 200, 120, 60), (7, 5, 7, 5)])
def test_whole_box_is_no_box(impl: Resize, H: int, W: int, h: int, w: int) -> None:
    src = smooth_image(H, W, 5)
    for dtype in OUT_DTYPES:
        np.testing.assert_array_equal(run(impl, src, h, w, dtype, box=(0, 0, W, H)), run(impl, src, h, w, dtype))
        np.testing.assert_array_equal(run(impl, src, h, w, dtype, box=[0.0, 0.0, float(W), float(H)]),
                                      run(impl, src, h, w, dtype, box=None))


def test_box_reads_only_its_windows(impl: Resize) -> None:
    # 270x480 -> 224x224 of the centre square (x 105..375): scale 1.2, so the
    # filter reaches 1.2 px past the box. Pixels further out must not matter
    # (the kernel only touches the columns some window reads), pixels inside do.
    src = smooth_image(270, 480, 9)
    box = (105, 0, 375, 270)
    ref = run(impl, src, 224, 224, box=box)
    far = src.copy()
    far[:, :103] = 255 - far[:, :103]
    far[:, 378:] = 255 - far[:, 378:]
    np.testing.assert_array_equal(run(impl, far, 224, 224, box=box), ref)
    near = src.copy()
    near[:, 104] = 255 - near[:, 104]  # inside the first windows' reach
    assert not np.array_equal(run(impl, near, 224, 224, box=box), ref)


def test_box_is_a_crop_when_it_falls_on_whole_pixels_at_scale_one(impl: Resize) -> None:
    # Same size out as the box: every window is one pixel with weight 1 (the
    # next one has weight 0), so the result is exactly the cropped pixels.
    src = rand_image(50, 70, 12)
    np.testing.assert_array_equal(run(impl, src, 30, 40, box=(20, 10, 60, 40)), src[10:40, 20:60])


def test_identity_and_constant(impl: Resize) -> None:
    src = rand_image(37, 41, 5)
    np.testing.assert_array_equal(run(impl, src, 37, 41), src)
    const = np.full((50, 70, 3), (12, 200, 255), np.uint8)
    for h, w in ((1, 1), (7, 300), (224, 224)):
        np.testing.assert_array_equal(run(impl, const, h, w), np.broadcast_to(const[:1, :1], (h, w, 3)))
    one = np.array([[[9, 130, 254]]], np.uint8)
    np.testing.assert_array_equal(run(impl, one, 224, 224), np.broadcast_to(one, (224, 224, 3)))


def test_downscale_is_antialiased(impl: Resize) -> None:
    # 1-pixel stripes average out with antialiasing; plain bilinear
    # interpolation (2 taps) would alias them into strong stripes.
    src = np.zeros((64, 640, 3), np.uint8)
    src[:, ::2] = 255
    out = run(impl, src, 64, 61).astype(int)[:, 1:-1]  # edges renormalise
    assert np.all(np.abs(out - 127.5) <= 3)


# -- output mapping --------------------------------------------------------------------


def test_int8_is_uint8_minus_128(impl: Resize) -> None:
    src = smooth_image(120, 200, 7)
    u8 = run(impl, src, 50, 60, np.uint8)
    i8 = run(impl, src, 50, 60, np.int8)
    np.testing.assert_array_equal(i8.astype(int), u8.astype(int) - 128)


@pytest.mark.parametrize("mean,std", NORMS + [(0.0, -2.0)])
@pytest.mark.parametrize("h,w", [(50, 60), (30, 190), (120, 60), (50, 200)])
def test_float32_is_normalised_filtered_value(impl: Resize, mean: float, std: float, h: int, w: int) -> None:
    # (30, 190) filters vertically first; (120, 60) and (50, 200) are
    # single-pass resizes, whose only rounding is the final one.
    src = smooth_image(120, 200, 8)
    u8 = run(impl, src, h, w, np.uint8).astype(np.float64)
    f32 = run(impl, src, h, w, np.float32, mean=mean, std=std)
    v = f32.astype(np.float64) * std + mean  # back to the filtered value
    # Unrounded: within half an LSB of the rounded value, and not rounded.
    assert np.max(np.abs(v - u8)) <= 0.5 + 1e-3
    assert np.mean(np.abs(v - np.rint(v)) > 1e-3) > 0.5


def test_defaults_map_to_minus_one_one(impl: Resize) -> None:
    src = np.zeros((10, 10, 3), np.uint8)
    src[:, 5:] = 255
    out = run(impl, src, 10, 10, np.float32)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)


# -- photos ----------------------------------------------------------------------------


def load_photo(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


@pytest.mark.parametrize(
    "path",
    PHOTOS or [pytest.param(None, marks=pytest.mark.skip(reason=f"no photos in {IMAGES}"))],
    ids=lambda p: p.name if p else "none",
)
def test_photos(native: ModuleType, path: Path) -> None:
    src = load_photo(path)
    for h, w in ((224, 224), (128, 128), (299, 299), (src.shape[0] // 3, src.shape[1] // 2)):
        ref = pillow_resize(src, h, w)
        c = run(native.resize_into, src, h, w)
        n = run(R.resize_into_numpy, src, h, w)
        assert maxdiff(c, ref) <= 1 and maxdiff(n, ref) <= 1 and maxdiff(c, n) <= 1, (h, w)
        assert rare(c != ref) and rare(n != ref), (h, w)
        cf = run(native.resize_into, src, h, w, np.float32)
        nf = run(R.resize_into_numpy, src, h, w, np.float32)
        assert maxdiff(cf, nf) <= float_tolerance(127.5), (h, w)


@pytest.mark.parametrize(
    "path",
    PHOTOS[:3] or [pytest.param(None, marks=pytest.mark.skip(reason=f"no photos in {IMAGES}"))],
    ids=lambda p: p.name if p else "none",
)
def test_photos_numpy_vs_pillow(path: Path) -> None:
    # The fallback on its own, so a box without the extension still checks it.
    src = load_photo(path)
    assert maxdiff(run(R.resize_into_numpy, src, 224, 224), pillow_resize(src, 224, 224)) <= 1


# -- in place --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", OUT_DTYPES)
def test_writes_into_slice_of_larger_array(impl: Resize, dtype: Any) -> None:
    src = smooth_image(90, 160, 9)
    expected = run(impl, src, 30, 40, dtype)
    big = np.full((34, 40, 3), 99, dtype)
    view = big[2:32]
    before = view.__array_interface__["data"][0]
    assert impl(src, view) is None
    assert view.base is big and view.__array_interface__["data"][0] == before
    np.testing.assert_array_equal(big[2:32], expected)
    assert np.all(big[:2] == 99) and np.all(big[32:] == 99)


def test_writes_into_tensor_like_view(impl: Resize) -> None:
    # interpreter.tensor(i)() is a (1, h, w, 3) array; the slot is [0].
    tensor = np.zeros((1, 224, 224, 3), np.uint8)
    slot = tensor[0]
    src = smooth_image(360, 640, 10)
    impl(src, slot)
    np.testing.assert_array_equal(tensor[0], run(impl, src, 224, 224))


def test_accepts_plain_buffers(impl: Resize) -> None:
    src = smooth_image(20, 30, 11)
    raw = bytearray(10 * 12 * 3)
    impl(memoryview(src.tobytes()).cast("B", (20, 30, 3)), memoryview(raw).cast("B", (10, 12, 3)))
    np.testing.assert_array_equal(np.frombuffer(raw, np.uint8).reshape(10, 12, 3), run(impl, src, 10, 12))


# -- bad arguments ---------------------------------------------------------------------

_OK_SRC = rand_image(8, 8)


def _ro(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _overlapping() -> tuple[np.ndarray, np.ndarray]:
    buf = np.zeros((16, 8, 3), np.uint8)
    return buf[:8], buf[4:12]


BAD: dict[str, tuple[Callable[[], tuple[Any, Any]], dict[str, Any], type]] = {
    "src float32": (lambda: (_OK_SRC.astype(np.float32), np.zeros((4, 4, 3), np.uint8)), {}, TypeError),
    "src bool": (lambda: (_OK_SRC > 0, np.zeros((4, 4, 3), np.uint8)), {}, TypeError),
    "src list": (lambda: (_OK_SRC.tolist(), np.zeros((4, 4, 3), np.uint8)), {}, TypeError),
    "src None": (lambda: (None, np.zeros((4, 4, 3), np.uint8)), {}, TypeError),
    "src 2-D": (lambda: (np.zeros((8, 24), np.uint8), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src 4-D": (lambda: (np.zeros((1, 8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src 4 channels": (lambda: (np.zeros((8, 8, 4), np.uint8), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src 1 channel": (lambda: (np.zeros((8, 8, 1), np.uint8), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src non-contiguous": (lambda: (rand_image(8, 16)[:, ::2], np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src fortran": (lambda: (np.asfortranarray(_OK_SRC), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src zero rows": (lambda: (np.zeros((0, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src zero cols": (lambda: (np.zeros((8, 0, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)), {}, ValueError),
    "src too wide": (
        lambda: (np.zeros((1, R.MAX_DIM + 1, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)),
        {},
        ValueError,
    ),
    "dst read-only": (lambda: (_OK_SRC, _ro(np.zeros((4, 4, 3), np.uint8))), {}, ValueError),
    "dst bytes": (lambda: (_OK_SRC, bytes(48)), {}, ValueError),
    "dst float64": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.float64)), {}, TypeError),
    "dst float16": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.float16)), {}, TypeError),
    "dst int16": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.int16)), {}, TypeError),
    "dst big-endian float32": (lambda: (_OK_SRC, np.zeros((4, 4, 3), ">f4")), {}, TypeError),
    "dst list": (lambda: (_OK_SRC, [[[0, 0, 0]]]), {}, TypeError),
    "dst 2-D": (lambda: (_OK_SRC, np.zeros((4, 12), np.uint8)), {}, ValueError),
    "dst 4 channels": (lambda: (_OK_SRC, np.zeros((4, 4, 4), np.float32)), {}, ValueError),
    "dst zero-size": (lambda: (_OK_SRC, np.zeros((0, 4, 3), np.uint8)), {}, ValueError),
    "dst zero-width": (lambda: (_OK_SRC, np.zeros((4, 0, 3), np.float32)), {}, ValueError),
    "dst non-contiguous": (lambda: (_OK_SRC, np.zeros((4, 8, 3), np.uint8)[:, ::2]), {}, ValueError),
    "dst too tall": (lambda: (_OK_SRC, np.zeros((R.MAX_DIM + 1, 1, 3), np.uint8)), {}, ValueError),
    "src/dst overlap": (_overlapping, {}, ValueError),
    "std zero": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.float32)), {"std": 0.0}, ValueError),
    "std inf": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.float32)), {"std": float("inf")}, ValueError),
    "mean nan": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"mean": float("nan")}, ValueError),
    "box not a sequence": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": 5}, TypeError),
    "box of 3": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (0, 0, 4)}, ValueError),
    "box of strings": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": "0048"}, TypeError),
    "box negative": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (-0.5, 0, 4, 4)}, ValueError),
    "box past the right": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (0, 0, 8.01, 8)}, ValueError),
    "box past the bottom": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (0, 0, 8, 9)}, ValueError),
    "box empty": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (2, 2, 2, 6)}, ValueError),
    "box inverted": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (0, 6, 8, 2)}, ValueError),
    "box nan": (lambda: (_OK_SRC, np.zeros((4, 4, 3), np.uint8)), {"box": (0, 0, float("nan"), 8)}, ValueError),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_raise(impl: Resize, case: str) -> None:
    make, kwargs, exc = BAD[case]
    src, dst = make()
    snapshot = np.array(dst, copy=True) if isinstance(dst, np.ndarray) else None
    with pytest.raises(exc):
        impl(src, dst, **kwargs)
    if snapshot is not None:
        np.testing.assert_array_equal(dst, snapshot)  # nothing half-written


def test_bad_arguments_same_type_and_message(native: ModuleType) -> None:
    for case, (make, kwargs, _) in BAD.items():
        errors = []
        for fn in (native.resize_into, R.resize_into_numpy):
            src, dst = make()
            with pytest.raises((TypeError, ValueError)) as info:
                fn(src, dst, **kwargs)
            errors.append(info.value)
        assert type(errors[0]) is type(errors[1]), case
        assert str(errors[0]).split(",")[0] == str(errors[1]).split(",")[0], case


def test_extreme_aspect_both_ways(impl: Resize) -> None:
    # A column to a row and back: the tall-to-wide case filters vertically
    # first, which keeps its scratch memory small.
    col = rand_image(R.MAX_DIM, 1, 14)
    row = run(impl, col, 1, R.MAX_DIM)
    assert np.all(row == row[:, :1])  # one input mean, spread along the row
    np.testing.assert_allclose(row[0, 0], col.reshape(-1, 3).mean(axis=0), atol=1.5)
    back = run(impl, row, 300, 1)
    assert np.all(back == row[0, 0])


def test_signature_errors(impl: Resize) -> None:
    dst = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(TypeError):
        impl(_OK_SRC)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        impl(_OK_SRC, dst, 0.0)  # type: ignore[misc]  # mean is keyword-only
    with pytest.raises(TypeError):
        impl(_OK_SRC, dst, scale=2.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        impl(_OK_SRC, dst, mean="0")  # type: ignore[arg-type]


def test_error_messages_name_the_problem(native: ModuleType) -> None:
    dst = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(TypeError, match="src must be uint8, got float32"):
        native.resize_into(_OK_SRC.astype(np.float32), dst)
    with pytest.raises(TypeError, match="dst must be uint8, int8 or float32, got float64"):
        native.resize_into(_OK_SRC, np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="dst must be writable"):
        native.resize_into(_OK_SRC, _ro(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(ValueError, match="src must be C-contiguous"):
        native.resize_into(rand_image(8, 16)[:, ::2], dst)
    with pytest.raises(ValueError, match="3 channels"):
        native.resize_into(np.zeros((8, 8, 4), np.uint8), dst)
    with pytest.raises(ValueError, match="3-D"):
        native.resize_into(np.zeros((8, 24), np.uint8), dst)


# -- threads ---------------------------------------------------------------------------


def test_native_resize_releases_the_gil(native: ModuleType) -> None:
    """Another Python thread keeps running while one long C resize runs.

    A spinning thread records its longest stall. Holding the GIL for the
    whole call would stall it for about the call's full length; released,
    it only loses the odd time slice.
    """
    src = rand_image(3000, 4000, 12)
    dst = np.zeros((2000, 3000, 3), np.uint8)
    native.resize_into(src, dst)  # page in dst: keep faults out of the timing
    state = {"gap": 0.0, "last": 0.0}
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        state["last"] = time.perf_counter()
        started.set()
        while not stop.is_set():
            now = time.perf_counter()
            state["gap"] = max(state["gap"], now - state["last"])
            state["last"] = now

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    t = threading.Thread(target=spin, daemon=True)
    t.start()
    ratios = []
    try:
        started.wait()
        for _ in range(3):  # a busy machine may deschedule the spinner once
            time.sleep(0.005)
            state["gap"] = 0.0
            t0 = time.perf_counter()
            native.resize_into(src, dst)
            elapsed = time.perf_counter() - t0
            ratios.append(state["gap"] / elapsed)
            if ratios[-1] < 0.5:
                break
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old_interval)
    # Typical: ~0.05 released, ~1.0 held.
    assert elapsed > 0.01, f"resize too quick ({elapsed * 1e3:.1f} ms) to judge"
    assert min(ratios) < 0.5, f"other thread stalled for {ratios} of each {elapsed * 1e3:.0f} ms resize"


def test_native_is_thread_safe(native: ModuleType) -> None:
    jobs = [
        (smooth_image(300 + 20 * i, 500 - 30 * i, i), (100 + i, 90 + 2 * i), dt)
        for i, dt in enumerate([np.uint8, np.float32, np.int8, np.uint8, np.float32, np.int8])
    ]
    expected = [run(native.resize_into, s, h, w, dt) for s, (h, w), dt in jobs]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(len(jobs))}
    errors: list[Exception] = []

    def work(i: int) -> None:
        try:
            s, (h, w), dt = jobs[i]
            for _ in range(20):
                results[i].append(run(native.resize_into, s, h, w, dt))
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, outs in results.items():
        for out in outs:
            np.testing.assert_array_equal(out, expected[i])


# -- dispatch --------------------------------------------------------------------------


def test_dispatch_flags_are_consistent() -> None:
    assert R.IMPLEMENTATION == ("native" if R.NATIVE else "numpy")
    if _flag("PYAI_NO_NATIVE"):
        assert not R.NATIVE


def test_native_required_when_asked() -> None:
    """Fails when PYAI_REQUIRE_NATIVE=1 and resize_into is not the C path."""
    if not _flag("PYAI_REQUIRE_NATIVE"):
        pytest.skip("PYAI_REQUIRE_NATIVE is not set")
    assert R.NATIVE, (
        "PYAI_REQUIRE_NATIVE=1 but pyai.resize fell back to NumPy (native_preproc missing, or PYAI_NO_NATIVE set)"
    )
    assert R.IMPLEMENTATION == "native"
    import native_preproc

    assert R._native is native_preproc.resize_into


def test_dispatch_uses_native_when_installed(native: ModuleType) -> None:
    if _flag("PYAI_NO_NATIVE"):
        pytest.skip("PYAI_NO_NATIVE is set")
    assert R.NATIVE and R._native is native.resize_into


def _native_importable() -> bool:
    try:
        from native_preproc import resize_into  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("value", ["1", "true", "0", ""])
def test_no_native_env_var(value: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYAI_NO_NATIVE"}
    env["PYAI_NO_NATIVE"] = value
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    code = "import pyai.resize as r; print(r.IMPLEMENTATION, r.NATIVE)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    forced = value in ("1", "true")
    expected = "native" if _native_importable() and not forced else "numpy"
    assert out.stdout.split() == [expected, str(expected == "native")]


def test_dispatch_resize_into_works() -> None:
    src = smooth_image(60, 80, 13)
    assert maxdiff(run(R.resize_into, src, 30, 40), pillow_resize(src, 30, 40)) <= 1


# -- NumPy path internals --------------------------------------------------------------


def test_weights_cached_normalised_and_read_only() -> None:
    R._weights.cache_clear()
    m = R._weights(640, 224)
    assert R._weights(640, 224) is m
    assert m.shape == (224, 640) and m.dtype == np.float32
    assert not m.flags.writeable
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(m >= 0)
    for n in range(1, 100):  # bounded cache
        R._weights(n, 7)
    assert R._weights.cache_info().currsize <= R._weights.cache_info().maxsize <= 64


def test_weights_match_pillow_windows() -> None:
    # Pillow 640 -> 224: support 2.857, first window covers input 0..3 only.
    m = R._weights(640, 224)
    assert np.flatnonzero(m[0]).tolist() == [0, 1, 2, 3]
    # Upscale: plain two-tap interpolation between neighbours.
    up = R._weights(2, 4)
    np.testing.assert_allclose(up, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], atol=1e-7)
