"""The batching engine, batch inference, labelImages and the engine's stats."""

from __future__ import annotations

import base64
import json
import random
import threading
import time

import numpy as np
import pytest

from pyai import BadInput, Classifier, ClosedError
from pyai.batching import (
    BatchedModel,
    BatchRewriteError,
    MEASURED_SPEEDUP,
    NATIVE_MIN_SPEEDUP,
    file_sha256,
    resolve_batch_mode,
    rewrite_batch,
)
from pyai.engine import Engine
from pyai.plugin.functions import ClassifierHolder, LabelImages, PyaiStats
from pyai.stats import Reservoir

from .conftest import MODEL_NAMES, SHIPPED_CONFIG, TINY_MODEL

pytestmark = pytest.mark.timeout(300)

MODES = ["loop", "native"]
BAD = b"this is not an image"


def _jpeg_and_bmp(images):
    return {k: v for k, v in images.items() if k.endswith((".jpg", ".bmp"))}


def _wait_all(futures, timeout=60.0):
    deadline = time.monotonic() + timeout
    for f in futures:
        f.exception(timeout=max(0.0, deadline - time.monotonic()))


def _counts_add_up(st: dict) -> None:
    assert st["submitted"] == st["completed"] + st["failed"] + st["errors"] + st["cancelled"] + st["in_flight"]
    frames_run = sum(int(k) * n for k, n in st["batch_sizes"].items())
    assert frames_run == st["completed"]
    assert st["batches"] == sum(st["batch_sizes"].values())
    lat = st["latency"]
    assert lat["total"].get("count", 0) == st["completed"]
    assert lat["queue_wait"].get("count", 0) == st["completed"]
    # Frames that failed after decoding (inference errors) were decoded too.
    assert st["completed"] <= lat["decode"].get("count", 0) <= st["completed"] + st["errors"]
    assert lat["inference"].get("count", 0) == st["batches"]
    for s in lat.values():
        if s["count"]:
            assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    json.dumps(st)


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_many_threads_submitting_get_the_sequential_answers(classifier, images, mode):
    photos = _jpeg_and_bmp(images)
    want = {name: classifier.label(data) for name, data in photos.items()}
    names = list(photos) * 4
    got: dict = {}
    errors = []
    start = threading.Barrier(6)

    with Engine(classifier, batch_mode=mode, max_queue_delay_ms=5) as eng:

        def producer(seed: int) -> None:
            order = names[:]
            random.Random(seed).shuffle(order)
            try:
                start.wait()
                futs = [(n, eng.submit(photos[n])) for n in order]
                got[seed] = [(n, f.result(timeout=60)) for n, f in futs]
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=producer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        st = eng.stats()

    assert not errors
    assert len(got) == 6
    for results in got.values():
        for name, res in results:
            # Bit-exact: batched rows equal batch-1 runs, so even confidences match.
            assert res == want[name], name
    assert st["batch_mode"] == mode
    assert st["completed"] == 6 * len(names)
    _counts_add_up(st)
    if mode == "native":
        assert max(int(k) for k in st["batch_sizes"]) > 1, st["batch_sizes"]


def test_classifier_submit_and_label_many_keep_order(tiny_classifier, images):
    photos = list(_jpeg_and_bmp(images).values())
    want = [tiny_classifier.label(p) for p in photos]
    assert tiny_classifier.label_many(photos) == want
    assert tiny_classifier.submit(photos[0]).result(timeout=30) == want[0]
    # base64 text, as eKuiper sends it
    assert tiny_classifier.label_many([base64.b64encode(p).decode() for p in photos]) == want


def test_label_many_raises_for_a_bad_frame_in_the_middle(tiny_classifier, images):
    good = [images["cat_720p.jpg"], images["parrot.jpg"]]
    with pytest.raises(BadInput, match="not an image"):
        tiny_classifier.label_many([good[0], BAD, good[1]])
    # The frames around it were still labelled, in order, and nothing is left behind.
    futs = [tiny_classifier.submit(x) for x in (good[0], BAD, good[1])]
    assert futs[0].result(timeout=30) == tiny_classifier.label(good[0])
    assert isinstance(futs[1].exception(timeout=30), BadInput)
    assert futs[2].result(timeout=30) == tiny_classifier.label(good[1])
    _wait_all(futs)
    assert tiny_classifier.stats()["in_flight"] == 0


def test_top_k_and_min_confidence_per_submit(tiny_classifier, images):
    with Engine(tiny_classifier) as eng:
        assert eng.submit(images["parrot.jpg"], top_k=2).result(timeout=30) == tiny_classifier.label(
            images["parrot.jpg"], top_k=2)
        res = eng.submit(images["parrot.jpg"], top_k=10, min_confidence=0.3).result(timeout=30)
        assert res and all(r["confidence"] >= 0.3 for r in res)


# -- labelImages ---------------------------------------------------------------------------


def test_label_images_function_gives_error_objects_in_place(tiny_classifier, images):
    frames = [images["cat_720p.jpg"], BAD, images["hot_dog.jpg"], None, images["parrot.jpg"], b""]
    window = [base64.b64encode(f).decode() if isinstance(f, bytes) else f for f in frames]
    fn = LabelImages(ClassifierHolder(lambda: tiny_classifier))
    assert fn.is_aggregate() is True
    assert fn.validate([{"name": "self"}]) == ""
    out = fn.exec([window])
    assert len(out) == len(frames)
    assert out[0] == tiny_classifier.label(frames[0])
    assert out[2] == tiny_classifier.label(frames[2])
    assert out[4] == tiny_classifier.label(frames[4])
    for i in (1, 3, 5):
        assert set(out[i]) == {"error"} and out[i]["error"], out[i]
    assert "not an image" in out[1]["error"]
    assert "null" in out[3]["error"]
    assert fn.exec([[]]) == []
    json.dumps(out)


def test_a_failed_frame_of_a_window_leaves_no_reference_cycle(tiny_classifier, images):
    """A frame's error must not keep the window's request alive until the cyclic GC
    runs (its traceback held the frames holding its future: the soak's RSS swing).
    The request buffer has no view left on it once the call answered: it can grow."""
    import gc

    from pyai.plugin.runtime import handle_function_request

    jpeg = images["cat_720p.jpg"]
    frames = [jpeg, jpeg[: len(jpeg) // 3], BAD, jpeg[:-2]]
    b64 = b'","'.join(base64.b64encode(f) for f in frames)
    buf = bytearray(b'{"func":"Exec","arg":[["' + b64 + b'"],"{}"]}')
    fn = LabelImages(ClassifierHolder(lambda: tiny_classifier))
    gc.collect()
    gc.disable()
    try:
        reply = json.loads(handle_function_request(fn, buf, len(buf)))
        buf.extend(b" ")  # BufferError while a FrameArg's memoryview is still alive
    finally:
        gc.enable()
    assert reply["state"] is True
    assert [isinstance(r, dict) and "error" in r for r in reply["result"]] == [False, True, True, True]


def test_drop_tracebacks_clears_the_whole_chain():
    from pyai.errors import drop_tracebacks

    def decode(data):
        try:
            raise ValueError("truncated")
        except ValueError as inner:
            raise BadInput("not an image") from inner

    try:
        decode(b"x" * 100)
    except BadInput as exc:
        kept = exc
    assert kept.__traceback__ is not None and kept.__cause__.__traceback__ is not None
    assert drop_tracebacks(kept) is kept
    assert kept.__traceback__ is None and kept.__cause__.__traceback__ is None
    assert str(kept) == "not an image"


def test_pyai_stats_function(tiny_classifier, images):
    tiny_classifier.label_many([images["cat_720p.jpg"]] * 3)
    st = PyaiStats(ClassifierHolder(lambda: tiny_classifier)).exec([])
    assert st["model"]["model"] == TINY_MODEL
    assert st["engine"]["completed"] >= 3
    json.dumps(st)


# -- close ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_close_finishes_every_frame_in_flight(tiny_classifier, images, mode):
    frames = [images["cat_720p.jpg"], images["grace_hopper.bmp"], BAD, images["parrot.jpg"]] * 15
    eng = Engine(tiny_classifier, batch_mode=mode, workers=2, max_batch=4, max_queue_delay_ms=20)
    futs = [eng.submit(f) for f in frames]
    eng.close()
    assert all(f.done() for f in futs)
    for frame, fut in zip(frames, futs):
        if frame is BAD:
            assert isinstance(fut.exception(), BadInput)
        else:
            assert fut.result() == tiny_classifier.label(frame)
    st = eng.stats()
    assert st["in_flight"] == 0 and st["completed"] == 45 and st["failed"] == 15 and st["closed"]
    _counts_add_up(st)
    assert not any(t.is_alive() for t in eng._threads)
    eng.close()  # idempotent


def test_submit_after_close_raises(models_dir, labels_path, images):
    with Classifier(model=str(models_dir / TINY_MODEL), labels=str(labels_path), threads=1) as clf:
        fut = clf.submit(images["cat_720p.jpg"])
    assert fut.done() and fut.result()[0]["label"]
    with pytest.raises(ClosedError, match="closed"):
        clf.submit(images["cat_720p.jpg"])
    with pytest.raises(ClosedError):
        clf.label_many([images["cat_720p.jpg"]])
    # The direct path does not depend on the engine.
    assert clf.label(images["cat_720p.jpg"]) == fut.result()


def test_close_from_a_future_callback_does_not_deadlock(tiny_classifier, images):
    eng = Engine(tiny_classifier)
    fut = eng.submit(images["cat_720p.jpg"])
    fut.add_done_callback(lambda f: eng.close())
    fut.result(timeout=30)
    for t in eng._threads:
        t.join(30)
    assert eng.closed and not any(t.is_alive() for t in eng._threads)


def test_cancelled_future_is_skipped(tiny_classifier, images):
    with Engine(tiny_classifier, workers=1) as eng:
        gate = threading.Event()
        orig = tiny_classifier.decode

        def slow_decode(image, reuse=False, split=False):
            gate.wait(10)
            return orig(image, reuse, split)

        eng._clf = _Proxy(tiny_classifier, decode=slow_decode)
        first = eng.submit(images["cat_720p.jpg"])  # direct, held in decode by the gate
        second = eng.submit(images["cat_720p.jpg"])  # queued for the decoder
        third = eng.submit(images["cat_720p.jpg"])
        assert third.cancel()
        gate.set()
        assert first.result(timeout=30) and second.result(timeout=30)
    assert third.cancelled()
    st = eng.stats()
    assert st["cancelled"] == 1 and st["in_flight"] == 0
    _counts_add_up(st)


# -- failures never block the others ---------------------------------------------------------


class _Proxy:
    """The classifier with some stages replaced (the engine only calls through it)."""

    def __init__(self, clf, **overrides):
        self._clf = clf
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._clf, name)


@pytest.mark.parametrize("mode", MODES)
def test_unexpected_decoder_and_resize_errors_fail_only_their_frame(tiny_classifier, images, mode):
    boom = b"\xff\xd8\xff boom"
    resize_boom = images["bird.bmp"]
    orig_decode, orig_fill = tiny_classifier.decode, tiny_classifier.fill

    odd = np.zeros((33, 31, 3), np.uint8)  # a frame size only resize_boom decodes to

    def decode(image, reuse=False, split=False):
        if image == boom:
            raise RuntimeError("decoder bug")
        if image == resize_boom:
            return odd
        return orig_decode(image, reuse, split)

    def fill(frame, slot, crop=None, box=None):  # box: one view of a frame (crop_mode=squares)
        if frame.shape == odd.shape:
            raise MemoryError("resize bug")
        return orig_fill(frame, slot, crop, box)

    with Engine(tiny_classifier, batch_mode=mode, workers=2, max_batch=4) as eng:
        eng._clf = _Proxy(tiny_classifier, decode=decode, fill=fill)
        cat = images["cat_720p.jpg"]
        frames = [cat, boom, BAD, cat, resize_boom, cat] * 5
        futs = [eng.submit(f) for f in frames]
        _wait_all(futs)
        for frame, fut in zip(frames, futs):
            if frame is boom:
                assert isinstance(fut.exception(), RuntimeError)
            elif frame is resize_boom:
                assert isinstance(fut.exception(), MemoryError)
            elif frame is BAD:
                assert isinstance(fut.exception(), BadInput)
            else:
                assert fut.result() == tiny_classifier.label(cat)
        # Still working, and no slot leaked.
        assert eng.submit(cat).result(timeout=30) == tiny_classifier.label(cat)
        st = eng.stats()
        assert eng._free.qsize() == len(eng._slots)
    assert st["errors"] == 10 and st["failed"] == 5 and st["completed"] == 16
    _counts_add_up(st)


@pytest.mark.parametrize("mode", MODES)
def test_an_inference_error_fails_its_batch_and_the_engine_goes_on(tiny_classifier, images, mode):
    with Engine(tiny_classifier, batch_mode=mode, workers=2, max_batch=4) as eng:
        cat = images["cat_720p.jpg"]
        want = tiny_classifier.label(cat)
        models = [tiny_classifier.model] + ([eng._batched] if eng._batched is not None else [])
        # A lone frame's views (crop_mode=squares) run on the classifier's own batch model.
        models += [tiny_classifier._views_model] if tiny_classifier._views_model else []
        calls = {"n": 0}

        def broken_run():
            calls["n"] += 1
            raise RuntimeError("invoke failed")

        for m in models:
            m.run = broken_run
        try:
            futs = [eng.submit(cat) for _ in range(6)]
            _wait_all(futs)
        finally:
            for m in models:
                del m.run
        assert calls["n"] >= 1
        assert all(isinstance(f.exception(), RuntimeError) for f in futs)
        assert [f.result(timeout=30) for f in [eng.submit(cat) for _ in range(6)]] == [want] * 6
        assert eng._free.qsize() == len(eng._slots)
        st = eng.stats()
    assert st["errors"] == 6 and st["completed"] == 6
    _counts_add_up(st)


# -- coalescing ------------------------------------------------------------------------------


def test_a_lone_frame_never_waits_for_a_batch(tiny_classifier, images):
    # A huge delay: if a lone frame waited for company, this would take 2 s.
    with Engine(tiny_classifier, batch_mode="native", max_queue_delay_ms=2000) as eng:
        cat = images["cat_720p.jpg"]
        eng.submit(cat).result(timeout=30)
        t0 = time.perf_counter()
        for _ in range(5):
            eng.submit(cat).result(timeout=30)
        assert time.perf_counter() - t0 < 1.5
        assert eng.stats()["batch_sizes"] == {"1": 6}
        # Two at once: the second is decoded while the first runs, then finds
        # nothing else on its way and must not wait either.
        t0 = time.perf_counter()
        for _ in range(3):
            _wait_all([eng.submit(cat), eng.submit(cat)])
        assert time.perf_counter() - t0 < 1.5


def test_frames_in_flight_are_coalesced_into_batches(tiny_classifier, images):
    with Engine(tiny_classifier, batch_mode="native", workers=2, max_batch=8, max_queue_delay_ms=200) as eng:
        futs = [eng.submit(images["cat_720p.jpg"]) for _ in range(17)]
        _wait_all(futs)
        st = eng.stats()
    sizes = {int(k): n for k, n in st["batch_sizes"].items()}
    assert max(sizes) >= 4, sizes
    assert all(k <= 8 for k in sizes)
    _counts_add_up(st)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_window_is_decoded_first_then_run_as_one_batch(tiny_classifier, images, workers):
    # The inference thread decodes queued frames itself while the workers do the
    # rest, so a window of 8 reaches the interpreter as one batch of 8 even with
    # one worker, and no frame takes the lone-frame path.
    photos = [images[n] for n in ("cat_720p.jpg", "parrot.jpg", "hot_dog.jpg", "cat_1080p.jpg")] * 2
    want = [tiny_classifier.label(p) for p in photos]
    with Engine(tiny_classifier, batch_mode="native", workers=workers, max_batch=8, max_queue_delay_ms=50) as eng:
        for _ in range(3):
            assert [f.result(timeout=30) for f in eng.submit_many(photos)] == want
        st = eng.stats()
    assert st["batch_sizes"] == {"8": 3}, st["batch_sizes"]
    _counts_add_up(st)


def test_helping_inference_thread_never_waits_for_a_slot(tiny_classifier, images):
    # The inference thread decodes queued frames while it waits; it alone frees
    # slots, so if it ever waited for one after the decoders took them all, the
    # engine would hang. Force that moment: the decoders are slow, and the
    # inference thread's decode returns only once every free slot is gone.
    orig = tiny_classifier.decode
    eng = Engine(tiny_classifier, batch_mode="native", workers=2, max_batch=2, max_queue_delay_ms=1000)

    def decode(image, reuse=False, split=False):
        if threading.current_thread().name == "pyai-infer":
            deadline = time.monotonic() + 5
            while not eng._free.empty() and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            time.sleep(0.02)
        return orig(image, reuse, split)

    eng._clf = _Proxy(tiny_classifier, decode=decode)
    frames = [images["bird.bmp"]] * 20
    futs = eng.submit_many(frames)
    want = tiny_classifier.label(frames[0])
    assert [f.result(timeout=60) for f in futs] == [want] * 20
    eng.close()
    st = eng.stats()
    assert st["completed"] == 20
    _counts_add_up(st)


def test_close_while_the_inference_thread_helps_loses_nothing(tiny_classifier, images):
    # close() while the inference thread decodes a frame itself: the last decoder's
    # stop marker reaches the ready queue before that frame does, and the frame
    # must still be run.
    a, b, c = images["cat_720p.jpg"], images["parrot.jpg"], images["hot_dog.jpg"]
    orig = tiny_classifier.decode

    def decode(image, reuse=False, split=False):
        infer = threading.current_thread().name == "pyai-infer"
        if image is b and not infer:
            time.sleep(0.2)
        if image is c and infer:
            time.sleep(0.5)
        return orig(image, reuse, split)

    eng = Engine(tiny_classifier, batch_mode="native", workers=1, max_batch=8, max_queue_delay_ms=1000)
    eng._clf = _Proxy(tiny_classifier, decode=decode)
    futs = eng.submit_many([a, b, c])
    time.sleep(0.1)
    eng.close()
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == [tiny_classifier.label(x) for x in (a, b, c)]
    _counts_add_up(eng.stats())


@pytest.mark.parametrize("mode", MODES)
def test_submit_many_with_bad_frames_and_close_in_flight(tiny_classifier, images, mode):
    frames = [images["cat_720p.jpg"], BAD, images["grace_hopper.bmp"], b"\xff\xd8\xff\xe0 cut"] * 6
    eng = Engine(tiny_classifier, batch_mode=mode, workers=2, max_batch=4)
    futs = eng.submit_many(frames) + eng.submit_many(frames[:1]) + eng.submit_many([])
    eng.close()
    assert len(futs) == len(frames) + 1 and all(f.done() for f in futs)
    for frame, fut in zip(frames + frames[:1], futs):
        if frame in (BAD, frames[3]):
            assert isinstance(fut.exception(), BadInput)
        else:
            assert fut.result() == tiny_classifier.label(frame)
    st = eng.stats()
    assert st["in_flight"] == 0 and st["failed"] == 12 and st["completed"] == 13
    _counts_add_up(st)
    with pytest.raises(ClosedError):
        eng.submit_many(frames)


def test_loop_mode_runs_one_frame_per_invoke(tiny_classifier, images):
    with Engine(tiny_classifier, batch_mode="loop", max_queue_delay_ms=50) as eng:
        _wait_all([eng.submit(images["cat_720p.jpg"]) for _ in range(10)])
        st = eng.stats()
    assert st["batch_mode"] == "loop" and st["max_queue_delay_ms"] == 0
    assert st["batch_sizes"] == {"1": 10}


# -- the batch rewrite -------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_batched_model_outputs_equal_batch1_outputs(models_dir, labels_path, images, model_name):
    clf = Classifier(model=str(models_dir / model_name), labels=str(labels_path), threads=2)
    frames = [clf.decode(d) for d in _jpeg_and_bmp(images).values()][:8]
    assert len(frames) == 8
    ref = []
    for f in frames:
        clf.fill(f, clf.model.input_slot(0))
        ref.append(clf.model.run()[0].copy())
    ref = np.stack(ref)

    bm = BatchedModel(clf.config.model, 2, 8)
    assert bm.input_tensor.shape == (8, *clf.model.input_tensor.shape[1:])
    assert bm.output_tensor.shape == (8, clf.model.num_classes)
    for k in (8, 3, 1, 8):
        bm.set_batch(k)
        assert bm.input_tensor.shape[0] == k and bm.output_tensor.shape == (k, clf.model.num_classes)
        # Reversed order too: rows must not leak into each other.
        rows = list(range(k))[::-1] if k == 3 else list(range(k))
        for i, r in enumerate(rows):
            clf.fill(frames[r], bm.input_tensor[i])
        out = bm.run()
        np.testing.assert_array_equal(out, ref[rows], err_msg=f"{model_name} batch {k}")


def test_rewrite_patches_input_and_reshape(models_dir):
    from ai_edge_litert import schema_py_generated as schema

    content = (models_dir / TINY_MODEL).read_bytes()
    out = rewrite_batch(content, 5)
    assert len(out) == len(content) and out != content
    model = schema.Model.GetRootAs(out, 0)
    sg = model.Subgraphs(0)
    assert sg.Tensors(sg.Inputs(0)).ShapeAsNumpy().tolist() == [5, 128, 128, 3]
    assert sg.Tensors(sg.Outputs(0)).ShapeAsNumpy().tolist() == [5, 1001]
    # Patched in place: a few shape bytes change, nothing moves.
    diff = np.flatnonzero(np.frombuffer(out, np.uint8) != np.frombuffer(content, np.uint8))
    assert 0 < len(diff) < 200


def test_rewrite_refuses_what_it_cannot_prove(models_dir):
    with pytest.raises(BatchRewriteError):
        rewrite_batch((models_dir / TINY_MODEL).read_bytes(), 0)
    with pytest.raises(BatchRewriteError, match="not a TFLite"):
        rewrite_batch(b"\x00" * 64, 4)
    content = bytearray((models_dir / TINY_MODEL).read_bytes())
    with pytest.raises(BatchRewriteError):
        rewrite_batch(bytes(content[: len(content) // 50]), 4)


def test_native_falls_back_to_loop_when_the_rewrite_fails(tiny_classifier, images, monkeypatch):
    import pyai.batching

    def refuse(content, batch):
        raise BatchRewriteError("op FANCY is not known to keep batch rows independent")

    monkeypatch.setattr(pyai.batching, "rewrite_batch", refuse)
    with Engine(tiny_classifier, batch_mode="native") as eng:
        assert eng.batch_mode == "loop"
        assert eng.submit(images["cat_720p.jpg"]).result(timeout=30) == tiny_classifier.label(images["cat_720p.jpg"])


def test_auto_mode_follows_the_measurements(models_dir, labels_path):
    for name in MODEL_NAMES:
        path = str(models_dir / name)
        measured = MEASURED_SPEEDUP[file_sha256(path)]
        for threads in (1, 2, 4):
            speedup = measured[max(t for t in measured if t <= threads)]
            want = "native" if speedup >= NATIVE_MIN_SPEEDUP else "loop"
            assert resolve_batch_mode("auto", path, threads) == want, (name, threads)
        assert resolve_batch_mode("loop", path, 2) == "loop"
        assert resolve_batch_mode("native", path, 1) == "native"
    # An unknown model: loop, the safe choice.
    assert resolve_batch_mode("auto", str(labels_path), 2) == "loop"


# -- stats -------------------------------------------------------------------------------------


def test_stats_counts_add_up(tiny_classifier, images):
    frames = [images["cat_720p.jpg"], BAD, images["parrot.jpg"], images["bird.bmp"]] * 6
    with Engine(tiny_classifier, batch_mode="native", max_batch=4, max_queue_delay_ms=10) as eng:
        _wait_all([eng.submit(f) for f in frames])
        st = eng.stats()
    assert st["submitted"] == 24 and st["completed"] == 18 and st["failed"] == 6
    assert st["errors"] == 0 and st["in_flight"] == 0
    assert all(1 <= int(k) <= 4 for k in st["batch_sizes"])
    _counts_add_up(st)


def test_stats_are_logged_lazily_at_the_interval(tiny_classifier, images, caplog):
    caplog.set_level("INFO", logger="pyai.engine")
    with Engine(tiny_classifier, stats_log_interval_s=0.05) as eng:
        eng.submit(images["cat_720p.jpg"]).result(timeout=30)
        time.sleep(0.06)
        eng.submit(images["cat_720p.jpg"]).result(timeout=30)
    logged = [r for r in caplog.records if "engine stats" in r.getMessage()]
    assert logged and json.loads(logged[-1].getMessage().split(": ", 1)[1])["completed"] >= 1


def test_reservoir_memory_is_bounded():
    r = Reservoir(100)
    for i in range(10_000):
        r.add(i / 1000.0)
    s = r.summary()
    assert s["count"] == 10_000 and s["window"] == 100
    # Only the last 100 samples (9.900 .. 9.999 s) are described.
    assert 9900 <= s["p50_ms"] <= 9999 and s["max_ms"] == pytest.approx(9999.0)
    assert r._buf.nbytes == 800
    assert Reservoir(10).summary() == {"count": 0}


# -- through the eKuiper protocol ---------------------------------------------------------------


def test_label_images_and_label_image_at_once_through_the_protocol(host, images, shipped_classifier):
    classifier = shipped_classifier
    cat, parrot, hot_dog = images["cat_720p.jpg"], images["parrot.jpg"], images["hot_dog.jpg"]
    window = [cat, parrot, hot_dog, BAD, images["grace_hopper.bmp"], cat, images["pets.jpg"], parrot]
    want = {i: classifier.label(f) for i, f in enumerate(window) if f is not BAD}
    host.start_symbol("labelImages")
    host.start_symbol("pyaiStats")
    assert host.is_aggregate("labelImages").result is True
    assert host.validate("labelImages", [{"name": "self"}]).state

    single_errors: list = []
    single_done = []
    stop = threading.Event()

    def label_image_loop() -> None:
        try:
            while not stop.is_set():
                r = host.exec("labelImage", hot_dog)
                if not r.state or r.result != want[2]:
                    single_errors.append(r.result)
                single_done.append(1)
        except Exception as exc:  # noqa: BLE001 - reported below
            single_errors.append(exc)

    t = threading.Thread(target=label_image_loop)
    t.start()
    try:
        for _ in range(3):
            reply = host.exec("labelImages", window)
            assert reply.state, reply.result
            assert len(reply.result) == 8
            for i, res in enumerate(reply.result):
                if i == 3:
                    assert set(res) == {"error"} and "not an image" in res["error"]
                else:
                    labels = [r["label"] for r in res]
                    assert labels == [r["label"] for r in want[i]], i
                    assert [r["confidence"] for r in res] == pytest.approx(
                        [r["confidence"] for r in want[i]], abs=1e-6)
    finally:
        stop.set()
        t.join(30)
    assert not single_errors, single_errors[:3]
    assert single_done

    st = host.exec("pyaiStats")
    assert st.state, st.result
    eng = st.result["engine"]
    assert eng["submitted"] >= 24 and eng["completed"] >= 21 and eng["failed"] >= 3
    assert eng["in_flight"] == 0
    _counts_add_up(eng)
    assert st.result["model"]["model"] == SHIPPED_CONFIG["model"]
