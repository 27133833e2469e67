"""A model change while frames stream: config edit or model file replaced, no frame lost
but those in flight, no answer from the old model once the change is acknowledged.

In-process (the plugin's holder, functions and watcher, no host): the same code the
plugin process runs; tests/ekuiper/test_model_change.py does it through kuiperd.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from pyai import Classifier, load_config
from pyai.plugin.functions import ClassifierHolder, LabelImage
from pyai.plugin.model_watch import STATUS_FILE_NAME, ModelWatch

from . import tiny_models as tm

RED = tm.solid_jpeg((240, 20, 30))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _status(folder: Path) -> dict:
    try:
        return json.loads((folder / STATUS_FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _wait_status(folder: Path, pred, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = _status(folder)
        if st and pred(st):
            return st
        time.sleep(0.02)
    raise AssertionError(f"status never matched: {_status(folder)}")


@pytest.fixture
def plugin(tmp_path: Path):
    """A plugin folder with model a (labels red/green/blue) and b (RED/GREEN/BLUE), serving a."""
    a = tm.build("uint8", "uint8")
    (tmp_path / "a.tflite").write_bytes(a)
    (tmp_path / "b.tflite").write_bytes(tm.repack(tm.build("int8", "float32", softmax=True),
                                                  [("labels.txt", "RED\nGREEN\nBLUE\n")]))
    config = {"model": "a.tflite", "threads": 1, "reload_check_s": 0.02, "self_heal": False}
    _write_json(tmp_path / "pyai_config.json", config)
    cfg = load_config(tmp_path, env={})
    holder = ClassifierHolder(lambda: Classifier(cfg), background=False)
    stop = threading.Event()
    watch = ModelWatch(tmp_path, holder, Classifier, cfg, 0.02, stop.is_set)
    watch.write_status()
    watch.start()
    yield tmp_path, holder, config
    stop.set()
    assert watch.thread is not None
    watch.thread.join(5)
    if holder.classifier is not None:
        holder.classifier.close()


class Stream:
    """A camera: labelImage calls one after another, as eKuiper makes them."""

    def __init__(self, holder: ClassifierHolder):
        self.fn = LabelImage(holder)
        self.answers: List[Tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            top = self.fn.exec([RED], "cam")[0]["label"]
            self.answers.append((time.monotonic(), top))

    def close(self) -> List[Tuple[float, str]]:
        self.stop.set()
        self.thread.join(10)
        return self.answers


def _after(answers, t: float) -> List[str]:
    return [label for at, label in answers if at > t]


def test_config_edit_swaps_the_model_without_a_wrong_answer(plugin):
    folder, holder, config = plugin
    stream = Stream(holder)
    time.sleep(0.2)
    _write_json(folder / "pyai_config.json", dict(config, model="b.tflite"))
    st = _wait_status(folder, lambda s: s["generation"] == 1)
    acked = time.monotonic()
    time.sleep(0.2)
    answers = stream.close()
    labels = [label for _, label in answers]
    assert st["error"] is None and st["model"].endswith("b.tflite")
    # Old answers, then new ones: never the old model again once the new one answered.
    first_new = labels.index("0:RED")
    assert set(labels[:first_new]) == {"0:red"} and set(labels[first_new:]) == {"0:RED"}
    assert _after(answers, acked) and set(_after(answers, acked)) == {"0:RED"}


def test_model_file_replaced_in_place(plugin):
    folder, holder, _ = plugin
    relabelled = tm.repack(tm.build("uint8", "uint8"), [("labels.txt", "rouge\nvert\nbleu\n")])
    tmp = folder / "a.tflite.new"
    tmp.write_bytes(relabelled)
    os.replace(tmp, folder / "a.tflite")
    _wait_status(folder, lambda s: s["generation"] == 1)
    assert LabelImage(holder).exec([RED], "cam")[0]["label"] == "0:rouge"


def test_a_change_that_cannot_load_keeps_the_old_model(plugin):
    folder, holder, config = plugin
    (folder / "wrong.txt").write_text("one\ntwo\n")
    _write_json(folder / "pyai_config.json", dict(config, labels="wrong.txt"))
    st = _wait_status(folder, lambda s: s["error"] is not None)
    assert "model change refused" in st["error"] and "has 2 labels, the model's output has 3 classes" in st["error"]
    assert "\n" not in st["error"] and st["generation"] == 0
    assert LabelImage(holder).exec([RED], "cam")[0]["label"] == "0:red"
    # A model named before it is there, then copied in: picked up.
    _write_json(folder / "pyai_config.json", dict(config, model="c.tflite"))
    st = _wait_status(folder, lambda s: "c.tflite" in (s["error"] or ""))
    (folder / "c.tflite").write_bytes((folder / "b.tflite").read_bytes())
    st = _wait_status(folder, lambda s: s["generation"] == 1)
    assert st["error"] is None
    assert LabelImage(holder).exec([RED], "cam")[0]["label"] == "0:RED"


def test_an_unexpected_load_error_is_refused_and_the_watch_goes_on(tmp_path):
    # A build that fails with an error outside pyai's own (a bug, a library's KeyError)
    # is a refused change like any other: the thread that watches must not die on it.
    (tmp_path / "a.tflite").write_bytes(tm.build("uint8", "uint8"))
    config = {"model": "a.tflite", "threads": 1, "reload_check_s": 0.02, "self_heal": False}
    _write_json(tmp_path / "pyai_config.json", config)
    cfg = load_config(tmp_path, env={})
    holder = ClassifierHolder(lambda: Classifier(cfg), background=False)
    builds = []

    def build(c):
        builds.append(c)
        if len(builds) == 1:
            raise KeyError("boom")
        return Classifier(c)

    stop = threading.Event()
    watch = ModelWatch(tmp_path, holder, build, cfg, 0.02, stop.is_set)
    watch.start()
    try:
        _write_json(tmp_path / "pyai_config.json", dict(config, top_k=2))
        st = _wait_status(tmp_path, lambda s: s["error"] is not None)
        assert "model change refused" in st["error"] and "boom" in st["error"]
        assert watch.thread is not None and watch.thread.is_alive()
        _write_json(tmp_path / "pyai_config.json", dict(config, top_k=3))
        st = _wait_status(tmp_path, lambda s: s["generation"] == 1)
        assert st["error"] is None
    finally:
        stop.set()
        assert watch.thread is not None
        watch.thread.join(5)
        if holder.classifier is not None:
            holder.classifier.close()


def test_replace_waits_for_the_calls_on_the_old_model(tmp_path):
    a = tmp_path / "a.tflite"
    a.write_bytes(tm.build("uint8", "uint8"))
    holder = ClassifierHolder(lambda: Classifier(model=str(a), threads=1), background=False)
    old = holder.classifier
    inside, release, replaced = threading.Event(), threading.Event(), threading.Event()

    def call() -> None:
        with holder.use() as clf:
            assert clf is old
            inside.set()
            release.wait(10)

    t = threading.Thread(target=call)
    t.start()
    assert inside.wait(10)
    new = Classifier(model=str(a), threads=1)
    r = threading.Thread(target=lambda: (holder.replace(new), replaced.set()))
    r.start()
    # New calls get the new model at once while the old call is still running...
    with holder.use() as clf:
        assert clf is new
    # ...and the change is acknowledged only once it has answered.
    assert not replaced.wait(0.2)
    release.set()
    assert replaced.wait(10)
    t.join(10)
    r.join(10)
    assert holder.generation == 1
    new.close()
