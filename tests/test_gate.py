"""The unchanged-frame gate (``skip_unchanged``) through the Python API.

Frames are small synthetic fixed-camera shots of the sample photos: the photo
with its own sensor noise, JPEG-encoded again, so no two frames have the same bytes.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import simplejpeg

from pyai import BadInput, Classifier, load_config
from pyai import gatekeeper as gatekeeper_module
from pyai.config import Config
from pyai.gate import DEFAULT_CHECK_EVERY, DEFAULT_MIN_MARGIN, DEFAULT_THRESHOLD, Gate, changed_cells, signature, site_name, top2

from .conftest import DEFAULT_MODEL, EXPECTED_TOP1

CAT = "286:Egyptian cat"


def camera_shot(jpeg: bytes, seed: int, noise: float = 2.0, gain: float = 1.0, quality: int = 85) -> bytes:
    """``jpeg`` as a fixed camera would send it again: its own noise, re-encoded."""
    rgb = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", min_width=640, min_height=360).astype(np.float32)
    rng = np.random.default_rng(seed)
    rgb = rgb * gain + rng.normal(0.0, noise, rgb.shape)
    return simplejpeg.encode_jpeg(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), quality=quality, colorspace="RGB")


@pytest.fixture(scope="module")
def shots(images: Dict[str, bytes]) -> Dict[str, list]:
    return {
        "cat": [camera_shot(images["cat_720p.jpg"], s) for s in range(4)],
        "hotdog": [camera_shot(images["hot_dog.jpg"], s) for s in range(3)],
    }


def _make(models_dir, labels_path, **kw) -> Classifier:
    return Classifier(model=str(models_dir / DEFAULT_MODEL), labels=str(labels_path), threads=2, **kw)


@pytest.fixture(scope="module")
def gated(models_dir, labels_path):
    clf = _make(models_dir, labels_path, skip_unchanged=DEFAULT_THRESHOLD)
    yield clf
    clf.close()


def _counts(clf: Classifier, site: str) -> tuple:
    s = clf.gate_stats()["sites"][site]
    return s["checked"], s["reused"], s["run"]


def test_off_by_default_and_off_never_takes_a_signature(classifier, shots, monkeypatch):
    assert Config().skip_unchanged == 0 and classifier.gate is None
    assert classifier.gate_stats() == {}

    def no_signature(*args, **kwargs):
        raise AssertionError("the gate's signature was taken with the gate off")

    monkeypatch.setattr(gatekeeper_module, "signature", no_signature)
    monkeypatch.setattr(gatekeeper_module, "jpeg_signature", no_signature)
    first = classifier.label(shots["cat"][0])
    assert classifier.label(shots["cat"][0]) == first
    assert first[0]["label"] == CAT


def test_same_frame_is_reused_once_the_model_confirmed_it(gated, classifier, shots):
    site = "twice"
    a = gated.label(shots["cat"][0], site=site)
    # Unchanged: run twice more to confirm the answer (confirm_runs).
    b = [gated.label(shots["cat"][0], site=site) for _ in range(2)]
    assert _counts(gated, site) == (3, 0, 3)
    c = gated.label(shots["cat"][0], site=site)
    assert [a] + b + [c] == [classifier.label(shots["cat"][0])] * 4
    assert _counts(gated, site) == (4, 1, 3)


def test_a_new_shot_of_the_same_scene_is_reused(gated, classifier, shots):
    site = "noise"
    reference = gated.label(shots["cat"][0], site=site)
    for shot in shots["cat"][1:3]:
        assert gated.label(shot, site=site) == classifier.label(shot)  # run, confirming: its own answer
    for shot in shots["cat"][3:] + shots["cat"][:2]:
        # The answer is the reference frame's (the one the second run agreed with),
        # and here also what the model says of this one.
        assert gated.label(shot, site=site) == reference
        assert classifier.label(shot)[0]["label"] == reference[0]["label"]
    assert _counts(gated, site) == (6, 3, 3)


def test_a_changed_scene_runs_the_model_and_the_next_frame_becomes_the_reference(gated, classifier, shots):
    site = "cut"
    assert gated.label(shots["cat"][0], site=site)[0]["label"] == CAT
    # The cut: the walk stops in the first rows, the model runs, and the site has no
    # reference until the next frame, walked whole and run.
    hotdog = gated.label(shots["hotdog"][0], site=site)
    assert hotdog == classifier.label(shots["hotdog"][0])
    assert hotdog[0]["label"] == EXPECTED_TOP1["hot_dog.jpg"]
    second = gated.label(shots["hotdog"][1], site=site)
    assert second == classifier.label(shots["hotdog"][1])
    # The next two shots confirm it; from then on it (the reference's answer) is reused.
    for shot in (shots["hotdog"][0], shots["hotdog"][2]):
        assert gated.label(shot, site=site) == classifier.label(shot)
    assert gated.label(shots["hotdog"][0], site=site) == second
    assert _counts(gated, site) == (6, 1, 5)


def test_a_busy_site_backs_off_and_a_still_one_is_answered_again(gated, classifier, shots):
    site = "busy"
    cat, hotdog = shots["cat"], shots["hotdog"]
    gated.label(cat[0], site=site)  # walked, run: the reference
    gated.label(hotdog[0], site=site)  # a cut: walked (stopped early), run; no reference
    gated.label(hotdog[1], site=site)  # walked whole, run: the reference
    gated.label(cat[1], site=site)  # a cut again: the next frame goes straight to the model
    assert _counts(gated, site) == (4, 0, 4)
    assert gated.label(cat[2], site=site) == classifier.label(cat[2])
    assert _counts(gated, site) == (4, 0, 5)  # run without a walk
    gated.label(cat[3], site=site)  # walked whole, run: the reference
    gated.label(cat[0], site=site)  # walked whole, run: agrees
    gated.label(cat[2], site=site)  # walked whole, run: agrees again, confirmed
    assert gated.label(cat[1], site=site) == classifier.label(cat[3])  # the reference's, reused
    assert _counts(gated, site) == (8, 1, 8)


def test_call_sites_never_share(gated, shots):
    gated.label(shots["cat"][0], site="cam-a")
    gated.label(shots["cat"][0], site="cam-b")
    assert _counts(gated, "cam-a") == (1, 0, 1)
    assert _counts(gated, "cam-b") == (1, 0, 1)
    for shot in shots["cat"][1:4]:
        gated.label(shot, site="cam-b")
    assert _counts(gated, "cam-a") == (1, 0, 1)
    assert _counts(gated, "cam-b") == (4, 1, 3)


def test_reused_answer_honours_top_k_and_min_confidence_of_its_own_call(gated, classifier, shots):
    site = "topk"
    gated.label(shots["cat"][0], site=site, top_k=1)
    for k, min_conf in ((5, None), (3, 0.01), (10, 0.0), (2, 0.5)):
        got = gated.label(shots["cat"][0], site=site, top_k=k, min_confidence=min_conf)
        assert got == classifier.label(shots["cat"][0], top_k=k, min_confidence=min_conf)
    assert len(gated.label(shots["cat"][0], site=site, top_k=10)) == 10
    assert _counts(gated, site) == (6, 3, 3)


def test_a_frame_that_fails_to_decode_is_an_error_never_a_reused_answer(gated, shots):
    site = "bad"
    good = shots["cat"][0]
    gated.label(good, site=site)
    # Refused before the gate (format, header, truncation) and, for the last two,
    # by the walker, then by the decoder: entropy-coded data cut short before the
    # end marker, and a restart marker where data should be.
    scan_end = len(good) - 2
    middle = len(good) * 3 // 4
    for bad in (good[: len(good) // 2], good[:600] + bytes(len(good) - 600), b"not an image",
                good[: scan_end - 200] + good[scan_end:],
                good[:middle] + b"\xff\xd0" + good[middle:]):
        with pytest.raises(BadInput):
            gated.label(bad, site=site)
        assert gated.label(good, site=site)[0]["label"] == CAT
    # Stray bytes before the end marker: the decoder never reads that far and takes
    # the frame, the walker (stricter) refuses it, so the model runs on it.
    odd = good[:scan_end] + b"\x12\x34" + good[scan_end:]
    before = _counts(gated, site)
    assert gated.label(odd, site=site)[0]["label"] == CAT
    assert _counts(gated, site)[2] == before[2] + 1


def test_an_unsure_answer_is_not_reused(models_dir, labels_path, shots):
    # The cat's top-1 leads by about 0.7: with a margin above that it is never reused.
    with _make(models_dir, labels_path, skip_unchanged=DEFAULT_THRESHOLD, skip_unchanged_margin=0.99) as clf:
        for _ in range(4):
            clf.label(shots["cat"][0])
        # All run; the third straight to the model (no answer to reuse: the site backs off).
        assert _counts(clf, "api") == (3, 0, 4)
    with _make(models_dir, labels_path, skip_unchanged=DEFAULT_THRESHOLD, skip_unchanged_margin=0.0) as clf:
        for _ in range(4):
            clf.label(shots["cat"][0])
        assert _counts(clf, "api") == (4, 1, 3)


def test_label_many_goes_through_the_gate_in_order(gated, classifier, shots):
    cat, hotdog = shots["cat"], shots["hotdog"]
    window = [cat[0], cat[1], cat[2], cat[3], hotdog[0], hotdog[1], cat[3]]
    got = gated.label_many(window, site="window")
    assert [r[0]["label"] for r in got] == [classifier.label(w)[0]["label"] for w in window]
    # cat0 run, cat1 and cat2 run (confirm), cat3 reused, hotdog0 a cut (run),
    # hotdog1 the new reference (run), cat3 a cut (run).
    assert _counts(gated, "window") == (7, 1, 6)


def test_sites_are_bounded_least_recently_used_first_out():
    gate = Gate(1.0, min_margin=0.0, max_sites=2)
    sig = np.zeros((2, 2, 3), np.float32)
    scores = np.arange(5, dtype=np.uint8)

    def frame(site: str):
        plan, reused = gate.consult(site, "tensor", lambda stop: sig)
        if reused is None:
            gate.store(plan, scores, 1.0)
        return reused

    for site in ("a", "b"):
        assert frame(site) is None
    assert frame("a") is None and frame("a") is None  # confirm a's answer
    assert frame("a") is not None  # a is now the most recent
    frame("c")
    assert set(gate.stats()["sites"]) == {"a", "c"} and gate.stats()["sites_evicted"] == 1
    assert frame("b") is None


def test_the_backoff_doubles_while_frames_keep_changing_and_resets_on_a_reuse():
    gate = Gate(1.0, min_margin=0.0)
    scores = np.arange(5, dtype=np.uint8)
    walks = []

    def frame(value: float):
        def scan(stop):
            # Like the JPEG walk: None (stopped early) for a frame far from ref.
            walks.append(value)
            # Values apart are different pictures, the same value the same one.
            sig = np.random.default_rng(int(value)).uniform(0, 255, (4, 4, 3)).astype(np.float32)
            head = np.ascontiguousarray(sig[:2])
            return None if stop is not None and stop(memoryview(head).cast("B"), 2, 4) else sig
        plan, reused = gate.consult("s", "jpeg", scan)
        if reused is None:
            gate.store(plan, scores, 1.0)
        return reused is not None

    changing = [frame(10.0 * i) for i in range(110)]
    assert not any(changing)
    # Walked: 0 (first), 1 (changed), 2 (reference), 3 (changed, skip 1), 5, 6
    # (changed, skip 3), 10, 11 (changed, skip 7), 19, 20 (skip 15), 36, 37 (skip 31),
    # 69, 70 (skip 31), 102, 103 (skip 31).
    assert walks == [10.0 * i for i in (0, 1, 2, 3, 5, 6, 10, 11, 19, 20, 36, 37, 69, 70, 102, 103)]
    assert frame(1030.0) is False  # skipped (31 after frame 103)
    walks.clear()
    results = [frame(1030.0) for _ in range(40)]
    # Still from here: the first walk sets the reference, every later one reuses it.
    assert results[results.index(True):] == [True] * (40 - results.index(True))
    changing = [frame(2000.0 + 10 * i) for i in range(3)]
    assert walks[-3:] == [2000.0, 2010.0, 2020.0]  # a reuse reset the backoff


def test_changed_cells_ignore_brightness_and_contrast_drift_but_not_a_local_change():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 200, (270, 480, 3), dtype=np.uint8)
    sig = signature(frame)
    assert sig.shape == (16, 30, 3)
    assert changed_cells(signature(frame + np.uint8(20)), sig, 1.0) == 0
    # A gain of 5% (a camera's exposure drift, a flickering light) with an offset.
    drift = np.clip(frame * 1.05 - 3, 0, 255).astype(np.uint8)
    assert changed_cells(signature(drift), sig, 1.0) == 0
    changed = frame.copy()
    changed[:90, :160] = 255 - changed[:90, :160]
    assert changed_cells(signature(changed), sig, 4.0) >= 50
    # One cell's worth of change is one changed cell, whatever the rest does.
    one = drift.copy()
    one[34:50, 34:50] = 250
    assert changed_cells(signature(one), sig, 4.0) == 1
    assert changed_cells(signature(frame[:200]), sig, 4.0) == 16 * 40  # every cell of the larger grid


def test_a_frame_has_changed_by_its_first_rows_or_by_all_of_them():
    gate = Gate(4.0, min_cells=1)
    ref = np.random.default_rng(3).uniform(20, 230, (16, 16, 3)).astype(np.float32)
    assert not gate.changed(ref + 1.5, ref)
    top, bottom = ref.copy(), ref.copy()
    top[0, 3] += 30
    bottom[12, 3] += 30
    assert gate.changed(top, ref) and gate.changed(bottom, ref)
    # The walker's early question is the same rule on the first rows.
    stop = gate.stopper(ref)
    head = np.ascontiguousarray(top[:2])
    assert stop(memoryview(head).cast("B"), 2, 16)
    head = np.ascontiguousarray(bottom[:2])
    assert not stop(memoryview(head).cast("B"), 2, 16)
    assert stop(memoryview(head).cast("B"), 2, 8)  # another grid: changed
    assert gate.stopper(None) is None
    assert gate.changed(ref[:8], ref)


def test_top2_reads_the_best_two_in_the_order_answers_are_given():
    assert top2(np.array([[3, 250, 10, 200]], np.uint8)) == (1, 3)
    assert top2(np.array([0.1, 0.5, 0.45], np.float32)) == (1, 2)
    assert top2(np.array([7, 9, 9], np.uint8)) == (1, 2)  # a tie: the lower index first
    assert top2(np.array([0.3], np.float32)) == (0, -1)


def test_rank_gives_the_lead_in_confidence(classifier, shots):
    raw = classifier.infer(classifier.decode(shots["cat"][0]))
    best, runner_up, lead = classifier.rank(raw)
    got = classifier.results(raw, 2, 0.0)
    assert [r["label"].split(":")[0] for r in got] == [str(best), str(runner_up)]
    assert lead == pytest.approx(got[0]["confidence"] - got[1]["confidence"])


def test_config_switches_and_validation():
    assert load_config(env={"PYAI_SKIP_UNCHANGED": "true"}).skip_unchanged == DEFAULT_THRESHOLD
    assert load_config(env={"PYAI_SKIP_UNCHANGED": "off"}).skip_unchanged == 0
    assert load_config(env={"PYAI_SKIP_UNCHANGED": "4"}).skip_unchanged == 4.0
    assert Config(skip_unchanged=True).skip_unchanged == DEFAULT_THRESHOLD
    assert Config().skip_unchanged_margin == DEFAULT_MIN_MARGIN
    assert Config().skip_unchanged_check_every == DEFAULT_CHECK_EVERY
    assert load_config(env={"PYAI_SKIP_UNCHANGED_CHECK_EVERY": "0"}).skip_unchanged_check_every == 0
    from pyai.errors import ModelError

    for bad in ({"skip_unchanged": -1}, {"skip_unchanged": "maybe"}, {"skip_unchanged_margin": 2},
                {"skip_unchanged_check_every": -1}):
        with pytest.raises(ModelError):
            Config(**bad)


def test_site_names_of_ekuiper_meta():
    meta = '{"ruleId":"r1","opId":"op2","instanceId":0,"funcId":1}'
    assert site_name(meta) == "r1/op2/0/1"
    assert site_name("cam-a") == "cam-a"


@pytest.mark.parametrize("dtype", ["uint8", "int8", "float32"])
def test_signature_is_the_mean_of_each_cells_sample_in_grey_levels(dtype):
    grey = np.random.default_rng(2).integers(0, 256, (224, 224, 3)).astype(np.float64)
    expected = grey.reshape(16, 14, 16, 14, 3)[:, 1::3, :, 1::3].mean(axis=(1, 3))
    if dtype == "uint8":
        tensor, scale, offset = grey.astype(np.uint8), 1.0, 0.0
    elif dtype == "int8":
        tensor, scale, offset = (grey - 128).astype(np.int8), 1.0, -128.0
    else:
        tensor, scale, offset = ((grey - 127.5) / 127.5).astype(np.float32), 127.5, -127.5
    np.testing.assert_allclose(signature(tensor, scale), expected + offset, atol=1e-3)


def test_pngs_and_progressive_jpegs_take_the_signature_from_the_input_tensor(gated, classifier, images):
    import io

    from PIL import Image

    rgb = Image.open(io.BytesIO(images["cat_720p.jpg"])).convert("RGB")
    walks = gated.gate_stats()["walks"]["calls"]
    for fmt, save in (("PNG", {}), ("JPEG", {"progressive": True, "quality": 85})):
        out = io.BytesIO()
        rgb.save(out, fmt, **save)
        data = out.getvalue()
        site = f"tensor-{fmt}"
        first = gated.label(data, site=site)
        assert first == classifier.label(data)
        for _ in range(2):
            assert gated.label(data, site=site) == first  # run again: confirm it
        assert gated.label(data, site=site) == first
        assert _counts(gated, site) == (4, 1, 3)
    # The progressive JPEG was offered to the walker, which declined it; the PNG never.
    assert gated.gate_stats()["walks"]["calls"] - walks <= 4


def test_the_walker_answers_jpegs_on_two_cores(gated, shots):
    site = "walks"
    before = gated.gate_stats()["walks"]
    for shot in shots["cat"] * 3:
        gated.label(shot, site=site)
    after = gated.gate_stats()["walks"]
    assert after["calls"] - before["calls"] == 12  # every frame walked, and reused once confirmed
    assert _counts(gated, site) == (12, 9, 3)
    # Whether the second core was met is up to the machine's load (test_dcsig.py).


def test_the_config_sets_how_often_the_model_checks_a_reused_answer(models_dir, labels_path, shots, classifier):
    cat = shots["cat"]
    with _make(models_dir, labels_path, skip_unchanged=DEFAULT_THRESHOLD, skip_unchanged_check_every=2) as clf:
        assert clf.gate_stats()["check_every"] == 2
        got = [clf.label(cat[i % len(cat)], site="chk") for i in range(7)]
        # Run, two runs that confirm, reused twice, the check (run: its own answer), reused.
        assert _counts(clf, "chk") == (7, 3, 4)
        assert got[5] == classifier.label(cat[5 % len(cat)])
        assert got[3] == got[4] == got[6] == got[0]
