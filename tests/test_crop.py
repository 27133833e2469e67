"""The crop / region of interest: its geometry, the decode size it asks for, and
each mode through Classifier against a careful reference."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pyai import Classifier, Config, ModelError, load_config
from pyai.crop import Crop
from pyai.decode import jpeg_scaled_size
from pyai.resize import resize_into, resize_into_numpy

from .conftest import EXPECTED_TOP1, TINY_MODEL, assert_like_reference, encode

NEW_DEFAULT = "tf2_mobilenet_v2_1.0_224_ptq.tflite"
MODES = [("stretch", 1.0), ("stretch", 0.875), ("aspect", 1.0), ("aspect", 0.875)]


# -- geometry ------------------------------------------------------------------------


def test_boxes_of_a_16_9_frame():
    sq = (224, 224)
    assert Crop("stretch", 1.0).box(480, 270, sq) is None
    # TF-slim's central crop: 87.5% of each side, centred.
    assert Crop("stretch", 0.875).box(480, 270, sq) == (30.0, 16.875, 450.0, 253.125)
    # Short side resize then centre crop: the centre square.
    assert Crop("aspect", 1.0).box(480, 270, sq) == (105.0, 0.0, 375.0, 270.0)
    assert Crop("aspect", 0.875).box(480, 270, sq) == (121.875, 16.875, 358.125, 253.125)
    # A tall frame keeps its width in aspect mode.
    assert Crop("aspect", 1.0).box(256, 465, sq) == (0.0, 104.5, 256.0, 360.5)
    # A non-square input: the region takes the input's aspect (2:1 here).
    assert Crop("aspect", 1.0).box(480, 270, (200, 100)) == (0.0, 15.0, 480.0, 255.0)


def test_bad_crops_are_refused():
    for mode, frac in [("square", 1.0), ("stretch", 0.0), ("aspect", 1.5), ("aspect", -0.5), ("stretch", math.nan)]:
        with pytest.raises(ValueError):
            Crop(mode, frac)
        with pytest.raises(ModelError, match="crop"):
            Config(crop_mode=mode, crop_fraction=frac)


def test_crop_from_json_and_environment(tmp_path):
    (tmp_path / "pyai_config.json").write_text('{"crop_mode": "aspect", "crop_fraction": 0.9}')
    cfg = load_config(tmp_path, env={})
    assert cfg.crop == Crop("aspect", 0.9)
    cfg = load_config(tmp_path, env={"PYAI_CROP_MODE": "stretch", "PYAI_CROP_FRACTION": "1"})
    assert cfg.crop == Crop("stretch", 1.0) and cfg.crop.whole_frame


def test_shipped_default_is_the_tf_slim_crop_of_the_tf2_model():
    cfg = Config()
    assert cfg.model == NEW_DEFAULT
    assert cfg.crop == Crop("stretch", 0.875)


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(1, 8000),
    h=st.integers(1, 8000),
    mode=st.sampled_from(["stretch", "aspect"]),
    frac=st.floats(0.3, 1.0),
    over=st.sampled_from([1.0, 1.1, 1.5]),
    size=st.sampled_from([(224, 224), (128, 128), (300, 200)]),
)
def test_decoded_region_covers_the_input(w, h, mode, frac, over, size):
    # Whatever DCT scale the JPEG decoder picks for decode_size(), the crop region
    # of the decoded frame is at least oversample x the input (unless a side of
    # the frame is decoded at full size and is simply smaller), and two scale
    # steps smaller would not be (one step smaller may be, by a pixel: the
    # decoder rounds sides up, which changes the frame's aspect a hair).
    crop = Crop(mode, frac)
    need = crop.decode_size(w, h, size, over)
    dw, dh = jpeg_scaled_size(w, h, *need)
    box = crop.box(dw, dh, size) or (0, 0, dw, dh)
    full = dw == w or dh == h
    for side, want in ((box[2] - box[0], size[0] * over), (box[3] - box[1], size[1] * over)):
        assert full or side >= want * (1 - 1e-9), (dw, dh, box)
    n = round(8 * dw / w)
    if 2 < n <= 8 and not full:
        sw, sh = -(-w * (n - 2) // 8), -(-h * (n - 2) // 8)
        sbox = crop.box(sw, sh, size) or (0, 0, sw, sh)
        assert sbox[2] - sbox[0] < size[0] * over or sbox[3] - sbox[1] < size[1] * over


# -- through Classifier ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_crops(models_dir, labels_path):
    clfs = {m: Classifier(model=str(models_dir / TINY_MODEL), labels=str(labels_path), threads=1,
                          crop_mode=m[0], crop_fraction=m[1]) for m in MODES}
    yield clfs
    for c in clfs.values():
        c.close()


@pytest.mark.parametrize("mode", MODES, ids=[f"{m}-{f}" for m, f in MODES])
def test_fill_is_the_resize_of_the_region(tiny_crops, images, mode):
    # The tensor pyai fills is exactly resize_into of the box computed by hand
    # (bit for bit), and the NumPy twin is within 1 LSB of it.
    clf = tiny_crops[mode]
    frame = clf.decode_bytes(images["cat_720p.jpg"])
    H, W = frame.shape[:2]
    fw = fh = mode[1]
    if mode[0] == "aspect":
        fw *= H / W
    rw, rh = W * fw, H * fh
    box = None if mode == ("stretch", 1.0) else ((W - rw) / 2, (H - rh) / 2, (W + rw) / 2, (H + rh) / 2)
    slot = clf.model.input_slot(0)
    clf.fill(frame, slot)
    want = np.empty_like(slot)
    resize_into(frame, want, box=box)
    np.testing.assert_array_equal(slot, want)
    twin = np.empty_like(slot)
    resize_into_numpy(frame, twin, box=box)
    assert np.max(np.abs(twin.astype(int) - slot.astype(int))) <= 1


@pytest.mark.parametrize("mode", MODES, ids=[f"{m}-{f}" for m, f in MODES])
def test_fill_matches_pillow_crop_and_resize(tiny_crops, images, mode):
    # Careful reference: Pillow's resize of the same region of the decoded frame.
    clf = tiny_crops[mode]
    frame = np.ascontiguousarray(clf.decode_bytes(images["parrot.jpg"]))
    w, h = clf.model.input_size
    box = clf.crop_box(frame)
    ref = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR, box=box))
    slot = clf.model.input_slot(0)
    clf.fill(frame, slot)
    diff = np.abs(slot.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= 0.02 * diff.size


def test_dct_scale_is_chosen_on_the_region(tiny_crops, images, models_dir, labels_path):
    # 720p into a 128x128 model at oversample 1.1 (141 px): the whole frame decodes
    # at 1/4 (320x180); its centre square is 180 px, enough, and 0.875 of it is
    # 157.5; the region of a stretch 0.875 crop, 157.5 high, too.
    assert tiny_crops[("stretch", 1.0)].decode_bytes(images["cat_720p.jpg"]).shape == (180, 320, 3)
    assert tiny_crops[("aspect", 0.875)].decode_bytes(images["cat_720p.jpg"]).shape == (180, 320, 3)
    with Classifier(model=str(models_dir / TINY_MODEL), labels=str(labels_path), threads=1,
                    crop_mode="aspect", crop_fraction=0.5) as clf:
        # Half the short side of a 1/4 decode is 90 px < 141: the decoder must go
        # to 1/2 (640x360), whose region is 180 px.
        assert clf.decode_bytes(images["cat_720p.jpg"]).shape == (360, 640, 3)


@pytest.mark.parametrize("mode", MODES, ids=[f"{m}-{f}" for m, f in MODES])
def test_label_format_unchanged_and_engine_agrees(tiny_crops, images, labels_path, mode):
    clf = tiny_crops[mode]
    lines = labels_path.read_text().splitlines()
    res = clf.label(images["hot_dog.jpg"])
    assert len(res) == 5
    for r in res:
        assert set(r) == {"confidence", "label"} and isinstance(r["confidence"], float)
        idx, name = r["label"].split(":", 1)
        assert lines[int(idx)].strip() == name
    assert [r["confidence"] for r in res] == sorted((r["confidence"] for r in res), reverse=True)
    # The batching engine decodes and fills the same way.
    assert clf.submit(images["hot_dog.jpg"]).result() == res


def test_non_jpeg_frames_are_cropped_too(tiny_crops, images):
    # Pillow's path decodes (and box-reduces) to the region's need as well.
    data = encode(Image.open(io.BytesIO(images["cat_720p.jpg"])), "PNG")
    clf = tiny_crops[("aspect", 0.875)]
    frame = clf.decode_bytes(data)
    box = clf.crop_box(frame)
    assert frame.shape[:2] != (720, 1280)  # reduced on load, not decoded at full size
    assert box[2] - box[0] >= 128 * 1.1 and box[3] - box[1] >= 128 * 1.1


def test_new_default_labels_the_sure_photos(models_dir, labels_path, images):
    # The shipped default (tf2 model, TF-slim crop) against the careful reference
    # (Pillow full decode, the same region, antialiased resize) on every photo, and
    # the right answer where it is not in doubt, except grace_hopper.bmp: a portrait
    # whose uniform is at the bottom edge, which the crop cuts (mortarboard 0.32,
    # military uniform third at 0.09; the whole frame says military uniform).
    with Classifier(Config(model=str(models_dir / NEW_DEFAULT), labels=str(labels_path), threads=2)) as clf:
        for name, data in images.items():
            top = assert_like_reference(clf, name, data)
            if name in EXPECTED_TOP1 and name != "grace_hopper.bmp":
                assert top["label"] == EXPECTED_TOP1[name], name


def test_previous_default_and_the_tutorial_layout_from_config(models_dir, labels_path, images, tmp_path):
    # The tutorial's model (mobilenet_v1_1.0_224_quant) is not mirrored here; its
    # zip holds the model and labels_mobilenet_quant_v1_224.txt (1001 lines,
    # "background" first, as imagenet_labels.txt). The same layout with a model we
    # have, the previous default, and the previous preprocessing: all from config.
    import shutil

    shutil.copy(models_dir / "mobilenet_v2_1.0_224_quant.tflite", tmp_path / "mobilenet_v2_1.0_224_quant.tflite")
    shutil.copy(labels_path, tmp_path / "labels_mobilenet_quant_v1_224.txt")
    (tmp_path / "pyai_config.json").write_text(
        '{"model": "mobilenet_v2_1.0_224_quant.tflite", "labels": "labels_mobilenet_quant_v1_224.txt",'
        ' "crop_mode": "stretch", "crop_fraction": 1.0, "threads": 1}')
    with Classifier(load_config(tmp_path, env={})) as clf:
        assert clf.crop_box(clf.decode_bytes(images["cat_720p.jpg"])) is None
        top = clf.label(images["cat_720p.jpg"])[0]
        # The previous default's answer: 0.79 here.
        assert top["label"] == "286:Egyptian cat" and top["confidence"] > 0.75


def test_per_call_crop_is_the_configured_one(tiny_crops, images):
    # Classifier.label(crop=...) (MediaPipe's per-call region of interest) gives
    # what a classifier configured with that crop gives, decode size included.
    from pyai import Crop

    whole = tiny_crops[("stretch", 1.0)]
    for mode in MODES:
        configured = tiny_crops[mode]
        for name in ("cat_720p.jpg", "parrot.jpg", "bird.bmp"):
            assert whole.label(images[name], crop=Crop(*mode)) == configured.label(images[name]), (mode, name)
        frame = whole.decode_bytes(images["cat_720p.jpg"], crop=Crop(*mode))
        assert frame.shape == configured.decode_bytes(images["cat_720p.jpg"]).shape
    # The config's crop is untouched by a per-call one.
    assert whole.crop_box(whole.decode_bytes(images["cat_720p.jpg"])) is None
