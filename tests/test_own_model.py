"""A user's own classifier: TFLite metadata first, every input/output type, clear refusals.

The models are assembled by tests/tiny_models.py (a colour classifier: 0 red,
1 green, 2 blue) with metadata written by the tests; nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
import numpy as np
import pytest

from pyai import Classifier
from pyai.errors import ModelError

from . import tiny_models as tm

COLOURS = {"0:red": (240, 20, 30), "1:green": (15, 230, 25), "2:blue": (20, 30, 235)}
TYPES = ("uint8", "int8", "float32")


def _write(tmp_path: Path, data: bytes, name: str = "mine.tflite") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _clf(tmp_path: Path, data: bytes, **kw) -> Classifier:
    kw.setdefault("threads", 1)
    kw.setdefault("top_k", 3)
    return Classifier(model=_write(tmp_path, data), **kw)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("softmax", [False, True], ids=["nosoftmax", "softmax"])
@pytest.mark.parametrize("output_type", TYPES)
@pytest.mark.parametrize("input_type", TYPES)
def test_every_input_and_output_type_labels_from_metadata(tmp_path, input_type, output_type, softmax):
    with _clf(tmp_path, tm.build(input_type, output_type, softmax=softmax)) as clf:
        assert clf.card.labels_source == "metadata labels.txt"
        for want, rgb in COLOURS.items():
            got = clf.label(tm.solid_jpeg(rgb))
            assert [r["label"] for r in got][0] == want
            confs = [r["confidence"] for r in got]
            assert confs == sorted(confs, reverse=True)
            assert all(0.0 <= c <= 1.0 + 1e-6 for c in confs)
            if clf.card.scores.kind == "logits" or softmax:
                # A probability over the classes: all three add up to 1.
                assert sum(confs) == pytest.approx(1.0, abs=0.02)
            else:
                # The dequantized score: the mean of the dominant channel in [0, 1].
                assert confs[0] == pytest.approx(max(rgb) / 255, abs=0.03)


def test_logits_confidence_is_the_softmax_of_the_row(tmp_path):
    # Float in, float out, no softmax: the output is the channel means in [0, 1].
    with _clf(tmp_path, tm.build("float32", "float32")) as clf:
        assert clf.card.scores.kind == "logits"
        got = {r["label"]: r["confidence"] for r in clf.label(tm.solid_jpeg((255, 0, 0), 32, 32))}
    x = np.array([1.0, 0.0, 0.0])
    want = np.exp(x) / np.exp(x).sum()
    assert got["0:red"] == pytest.approx(want[0], abs=0.01)
    assert got["2:blue"] == pytest.approx(want[2], abs=0.01)


def test_config_scores_overrides_the_guess(tmp_path):
    with _clf(tmp_path, tm.build("float32", "float32"), scores="probability") as clf:
        top = clf.label(tm.solid_jpeg((255, 0, 0), 32, 32))[0]
    assert top["label"] == "0:red" and top["confidence"] == pytest.approx(1.0, abs=0.01)


def test_metadata_output_range_makes_a_float_output_a_probability(tmp_path):
    meta = tm.Meta(output_range=(0.0, 1.0))
    with _clf(tmp_path, tm.build("uint8", "float32", meta=meta)) as clf:
        assert clf.card.scores.kind == "probability"
        assert clf.label(tm.solid_jpeg((255, 0, 0), 32, 32))[0]["confidence"] == pytest.approx(1.0, abs=0.01)


def test_score_calibration_from_metadata(tmp_path):
    # identity transform, scale 1, slope 2, offset -1 for every class: sigmoid(2x - 1).
    meta = tm.Meta(calibration=(0, 0.0, "1.0,2.0,-1.0\n1.0,2.0,-1.0\n1.0,2.0,-1.0\n"))
    with _clf(tmp_path, tm.build("float32", "float32", meta=meta)) as clf:
        assert clf.card.scores.kind == "calibrated"
        got = {r["label"]: r["confidence"] for r in clf.label(tm.solid_jpeg((255, 0, 0), 32, 32))}
    assert got["0:red"] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=0.01)
    assert got["1:green"] == pytest.approx(1 / (1 + np.exp(1.0)), abs=0.01)


def test_score_calibration_with_the_wrong_line_count_is_refused(tmp_path):
    meta = tm.Meta(calibration=(0, 0.0, "1.0,2.0,-1.0\n"))
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, tm.build("float32", "float32", meta=meta))
    assert "calibration file has 1 lines, the output has 3 classes" in _one_line(exc)


def test_metadata_score_threshold_is_the_default_floor(tmp_path):
    # Float in, float out with a softmax-free output in [0, 1] (output_range): a red
    # frame scores red ~1.0 and the others ~0.0, so a 0.5 threshold keeps red alone.
    meta = tm.Meta(output_range=(0.0, 1.0), score_threshold=0.5)
    data = tm.build("uint8", "float32", meta=meta)
    frame = tm.solid_jpeg((255, 0, 0), 32, 32)
    with _clf(tmp_path, data) as clf:
        assert clf.describe()["min_confidence"] == "0.5 (metadata)"
        assert [r["label"] for r in clf.label(frame)] == ["0:red"]
        # A call's own floor still wins, as labelImage(self, k, minConfidence) does.
        assert len(clf.label(frame, min_confidence=0.0)) == 3
    # The config's min_confidence, 0 included, overrides the metadata.
    with _clf(tmp_path, data, min_confidence=0.0) as clf:
        assert clf.describe()["min_confidence"] == "0 (config)"
        assert len(clf.label(frame)) == 3


def test_no_threshold_in_the_metadata_floor_is_zero(tmp_path):
    with _clf(tmp_path, tm.build("uint8", "uint8")) as clf:
        assert clf.describe()["min_confidence"] == "0 (default)"
        assert len(clf.label(tm.solid_jpeg((255, 0, 0), 32, 32))) == 3


def test_a_score_threshold_that_is_not_a_number_is_refused(tmp_path):
    meta = tm.Meta(score_threshold=float("nan"))
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, tm.build("uint8", "uint8", meta=meta))
    assert "score threshold of nan" in _one_line(exc)


def test_display_names_by_locale(tmp_path):
    meta = tm.Meta(label_files=[("labels.txt", "red\ngreen\nblue\n", ""), ("labels_fr.txt", "rouge\nvert\nbleu\n", "fr")])
    data = tm.build("uint8", "uint8", meta=meta)
    with _clf(tmp_path, data) as clf:
        assert clf.label(tm.solid_jpeg(COLOURS["1:green"]))[0]["label"] == "1:green"
    with _clf(tmp_path, data, label_locale="fr") as clf:
        assert clf.label(tm.solid_jpeg(COLOURS["1:green"]))[0]["label"] == "1:vert"
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, data, label_locale="de")
    assert "no label file for label_locale 'de'" in _one_line(exc)


def test_config_labels_win_over_metadata(tmp_path, caplog):
    labels = tmp_path / "mine.txt"
    labels.write_text("crimson\nlime\nnavy\n")
    with caplog.at_level(logging.WARNING, logger="pyai.model_card"):
        with _clf(tmp_path, tm.build("uint8", "uint8"), labels=str(labels)) as clf:
            assert clf.label(tm.solid_jpeg(COLOURS["2:blue"]))[0]["label"] == "2:navy"
    assert "differs from the label file in the model's metadata on 3 of 3 lines" in caplog.text


@pytest.mark.parametrize("lines", [2, 4])
def test_wrong_labels_file_is_refused_at_start(tmp_path, lines):
    labels = tmp_path / "wrong.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(lines)) + "\n")
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, tm.build("uint8", "uint8"), labels=str(labels))
    assert _one_line(exc) == f"labels file {labels} has {lines} labels, the model's output has 3 classes"


def test_wrong_packed_label_file_is_refused_at_start(tmp_path):
    data = tm.repack(tm.build("uint8", "uint8"), [("labels.txt", "red\ngreen\n")])
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, data)
    assert "the label file labels.txt in the model has 2 labels, the model's output has 3 classes" in _one_line(exc)


def test_metadata_naming_a_file_that_is_not_packed_is_refused(tmp_path):
    data = tm.repack(tm.build("uint8", "uint8"), [("other.txt", "x\n")])
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, data)
    assert "names 'labels.txt', which is not packed in the model file" in _one_line(exc)


def test_no_metadata_and_no_labels_is_refused(tmp_path):
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, tm.build("uint8", "uint8", meta=None))
    assert "carries no label file in its metadata: set labels" in _one_line(exc)


def test_no_metadata_with_a_labels_file_labels(tmp_path):
    labels = tmp_path / "l.txt"
    labels.write_text("red\ngreen\nblue\n")
    with _clf(tmp_path, tm.build("uint8", "uint8", meta=None), labels=str(labels)) as clf:
        assert clf.label(tm.solid_jpeg(COLOURS["0:red"]))[0]["label"] == "0:red"
        assert clf.card.norm.source == "raw pixels (no mean/std)"


def test_float_model_without_normalisation_is_refused(tmp_path):
    data = tm.build("float32", "float32", softmax=True, meta=tm.Meta(mean=None, std=None))
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, data)
    assert "float-input model without normalisation" in _one_line(exc)
    # The config may supply it.
    with _clf(tmp_path, data, mean=0.0, std=255.0) as clf:
        assert clf.label(tm.solid_jpeg(COLOURS["1:green"]))[0]["label"] == "1:green"


def _filled(clf: Classifier, rgb) -> np.ndarray:
    frame = np.empty((clf.model.input.height, clf.model.input.width, 3), np.uint8)
    frame[...] = rgb
    slot = np.empty_like(clf.model.input_slot(0))
    clf.fill(frame, slot)
    return slot


def test_config_mean_std_win_over_metadata(tmp_path):
    data = tm.build("float32", "float32", softmax=True)  # metadata: mean 0, std 255
    with _clf(tmp_path, data) as clf:
        assert _filled(clf, (255, 0, 51))[0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2], abs=1e-5)
        assert (clf.config.mean, clf.config.std) == (0.0, 255.0)
    with _clf(tmp_path, data, mean=127.5, std=127.5) as clf:
        assert _filled(clf, (255, 0, 51))[0, 0].tolist() == pytest.approx([1.0, -1.0, -0.6], abs=1e-5)


def test_per_channel_normalisation(tmp_path):
    meta = tm.Meta(mean=(0.0, 100.0, 200.0), std=(255.0, 50.0, 25.0))
    with _clf(tmp_path, tm.build("float32", "float32", softmax=True, meta=meta)) as clf:
        assert not clf.card.norm.fast
        assert _filled(clf, (255, 150, 250))[2, 3].tolist() == pytest.approx([1.0, 1.0, 2.0], abs=1e-5)


@pytest.mark.parametrize("input_type", ["uint8", "int8"])
def test_quantized_input_whose_quantization_is_not_the_normalisation(tmp_path, input_type):
    # Real input = p / 255 (metadata), but the tensor's step is 2/255: q = p / 2 (+ zero point).
    zp = 0 if input_type == "uint8" else -128
    data = tm.build(input_type, input_type, input_quant=tm.Quant(2 / 255, zp), output_quant=tm.Quant(2 / 255, zp),
                    meta=tm.Meta(output_range=(0.0, 1.0)))
    with _clf(tmp_path, data) as clf:
        assert not clf.card.norm.fast
        got = _filled(clf, (254, 100, 0))[0, 0].astype(int).tolist()
        assert got == [127 + zp, 50 + zp, 0 + zp]
        assert clf.label(tm.solid_jpeg(COLOURS["2:blue"]))[0]["label"] == "2:blue"


@pytest.mark.parametrize("crop_mode", ["stretch", "aspect"])
def test_non_square_input(tmp_path, crop_mode):
    with _clf(tmp_path, tm.build("uint8", "uint8", height=12, width=20), crop_mode=crop_mode) as clf:
        assert clf.model.input_size == (20, 12)
        for want, rgb in COLOURS.items():
            assert clf.label(tm.solid_jpeg(rgb, 160, 90))[0]["label"] == want


def test_two_outputs_refused(tmp_path):
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, tm.build("uint8", "uint8", two_outputs=True))
    assert "1 inputs and 2 outputs" in _one_line(exc)


def test_not_a_model_refused(tmp_path):
    with pytest.raises(ModelError) as exc:
        _clf(tmp_path, b"PK\x03\x04 not a model at all")
    _one_line(exc)


def test_corrupt_metadata_is_a_model_error_not_a_crash():
    # A model file damaged anywhere (the metadata buffer is opaque to the interpreter's
    # verifier): read() either reads it or refuses it with a one-line ModelError; a
    # struct.error or TypeError from the flatbuffer reader would escape the loaders,
    # which catch pyai's errors (the model watch thread would die on it).
    import random

    from pyai.metadata import read

    model = tm.build()
    rnd = random.Random(20261204)
    for _ in range(400):
        data = bytearray(model)
        for _ in range(3):
            data[rnd.randrange(8, len(data))] = rnd.randrange(256)
        try:
            read(bytes(data))
        except ModelError as exc:
            assert "\n" not in str(exc)


def test_dequantized_rows_of_a_float_output_outlive_the_next_run(tmp_path):
    # With a float output, dequantize() returned the output tensor itself: a row kept
    # for one view was overwritten by the next view's run.
    from pyai.model import Model

    model = Model(_write(tmp_path, tm.build("uint8", "float32", softmax=True)))
    rows = []
    for name in ("0:red", "2:blue"):
        model.input_slot(0)[...] = COLOURS[name]
        rows.append(model.dequantize(model.run()[0]))
    assert [int(np.argmax(r)) for r in rows] == [0, 2]


@pytest.mark.parametrize("batch_mode", ["loop", "native"])
def test_views_of_a_float_output_model_each_count(tmp_path, batch_mode):
    # A 16:9 frame, red centre square, blue sides: its two views (the centre square and
    # the whole frame) answer differently, and the merged answer is the reference's.
    import io

    from PIL import Image

    from pyai.reference import reference_label

    im = Image.new("RGB", (320, 180), COLOURS["2:blue"])
    im.paste(Image.new("RGB", (180, 180), COLOURS["0:red"]), (70, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    frame = buf.getvalue()
    with _clf(tmp_path, tm.build("uint8", "float32", softmax=True), crop_mode="squares", crop_squares=1,
              crop_whole=True, batch_mode=batch_mode) as clf:
        want = reference_label(clf, frame, k=3)
        for got in (clf.label(frame), clf.label_many([frame, frame])[1]):
            assert [r["label"] for r in got] == [r["label"] for r in want]
            assert [r["confidence"] for r in got] == pytest.approx([r["confidence"] for r in want], abs=0.02)


def test_engine_batches_with_an_own_model(tmp_path):
    with _clf(tmp_path, tm.build("int8", "float32", softmax=True)) as clf:
        frames = [tm.solid_jpeg(rgb) for rgb in COLOURS.values()] * 3
        got = [r[0]["label"] for r in clf.label_many(frames)]
    assert got == list(COLOURS) * 3


def test_shipped_models_read_their_metadata(models_dir: Path, images):
    from pyai.metadata import read

    from .conftest import EXPECTED_TOP1

    data = (models_dir / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    mf = read(data)
    assert mf.metadata is not None and mf.metadata.mean == (127.5,) and mf.metadata.std == (127.5,)
    assert [f.name for f in mf.metadata.label_files] == ["imagenet_labels.txt"]
    assert mf.graph.output_activation == "SOFTMAX"
    # No labels, mean or std in the config: all from the model.
    with Classifier(model=str(models_dir / "mobilenet_v2_1.0_224_quant.tflite"), threads=1) as clf:
        assert len(clf.labels) == 1001 and clf.labels[0] == "0:background"
        assert clf.label(images["cat_720p.jpg"])[0]["label"] == EXPECTED_TOP1["cat_720p.jpg"]


def test_shipped_model_with_a_wrong_labels_file_is_refused(models_dir: Path, tmp_path: Path):
    labels = tmp_path / "labels_1000.txt"
    lines = (models_dir / "imagenet_labels.txt").read_text().splitlines()[1:]  # the classic off-by-one
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError) as exc:
        Classifier(model=str(models_dir / "mobilenet_v2_1.0_224_quant.tflite"), labels=str(labels), threads=1)
    assert _one_line(exc) == f"labels file {labels} has 1000 labels, the model's output has 1001 classes"


@pytest.mark.parametrize("input_type", TYPES)
def test_careful_reference_feeds_every_input_type(tmp_path, input_type):
    from pyai.reference import reference_label

    meta = tm.Meta(mean=(0.0, 100.0, 200.0), std=(255.0, 50.0, 25.0)) if input_type == "float32" else tm.Meta()
    with _clf(tmp_path, tm.build(input_type, "float32", softmax=True, meta=meta)) as clf:
        for rgb in COLOURS.values():
            jpeg = tm.solid_jpeg(rgb)
            ref, fast = reference_label(clf, jpeg, 3), clf.label(jpeg)
            # A solid colour resizes exactly either way: the same answer.
            assert [r["label"] for r in ref] == [r["label"] for r in fast]
            assert [r["confidence"] for r in ref] == pytest.approx([r["confidence"] for r in fast], abs=0.01)
