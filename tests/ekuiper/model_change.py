"""A model change while a 30 fps camera streams through kuiperd (test_tutorial.py runs it).

The camera publishes one photo at 30 frames a second; the tutorial's rule labels
each frame. Meanwhile ``pyai_config.json`` in the plugin folder is rewritten to
another model (mobilenet_v1_0.25_128_quant, its packed labels prefixed ``b/`` so
each answer tells which model gave it; no ``labels`` in the config: they come from
the model's metadata), and afterwards back. Measured: frames published and
answered, the longest time without an answer, the time from the config write to the
plugin's acknowledgement (``pyai_model_status.json``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tests import tiny_models
from tests.ekuiper.harness import Kuiperd, MqttCollector, cmdline, pids_with_cwd_under

FPS = 30.0
STATUS = "pyai_model_status.json"
OTHER_MODEL = "mobilenet_v1_0.25_128_quant.tflite"
PREFIX = "b/"


def relabelled(model: Path) -> bytes:
    """``model`` with its packed label file's names prefixed: the same metadata, other answers."""
    import zipfile

    with zipfile.ZipFile(model) as z:
        name = z.namelist()[0]
        text = z.read(name).decode()
    return tiny_models.repack(model.read_bytes(), [(name, "\n".join(PREFIX + n for n in text.splitlines()) + "\n")])


def write_json(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def status(plugin_dir: Path) -> Dict[str, Any]:
    try:
        return json.loads((plugin_dir / STATUS).read_text())
    except (OSError, ValueError):
        return {}


class Camera:
    """Publishes ``frame`` at FPS on a schedule (no drift) and collects the rule's answers
    with their arrival times."""

    def __init__(self, mqtt: MqttCollector, frame_topic: str, result_topic: str, frame: bytes):
        self.mqtt, self.frame_topic, self.result_topic, self.frame = mqtt, frame_topic, result_topic, frame
        self.published: List[float] = []
        self.answers: List[Tuple[float, str]] = []
        self.stop = threading.Event()
        self._stopped = 0.0
        self._threads = [threading.Thread(target=self._publish, daemon=True),
                         threading.Thread(target=self._collect, daemon=True)]
        for t in self._threads:
            t.start()

    def _publish(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            due = start + n / FPS
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            # When it is sent, not when the broker acknowledged it: a frame sent before the
            # plugin's acknowledgement may be labelled by the old model, none sent after it.
            self.published.append(time.monotonic())
            self.mqtt.publish(self.frame_topic, self.frame)
            n += 1

    def _collect(self) -> None:
        while not (self.stop.is_set() and len(self.answers) >= len(self.published)):
            raw = self.mqtt.get(self.result_topic, 0.05)
            if raw is not None:
                self.answers.append((time.monotonic(), json.loads(raw).get("label", "")))
            elif self.stop.is_set() and time.monotonic() - self._stopped > 5.0:
                return

    def finish(self) -> None:
        self._stopped = time.monotonic()
        self.stop.set()
        for t in self._threads:
            t.join(15)


def cpu_seconds(pids: List[int]) -> float:
    """User + system CPU time of ``pids`` (and their reaped children), from /proc."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Change:
    written: float
    acknowledged: float
    status: Dict[str, Any]


@dataclass
class Run:
    published: int
    answered: int
    longest_gap_s: float
    changes: List[Change] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    times: List[float] = field(default_factory=list)
    sent: List[float] = field(default_factory=list)
    wall_s: float = 0.0
    # CPU seconds over the run: the plugin process (serving, plus loading each new model), kuiperd.
    cpu_plugin_s: float = 0.0
    cpu_kuiperd_s: float = 0.0

    def summary(self, version: str) -> str:
        acks = ", ".join(f"{(c.acknowledged - c.written) * 1000:.0f} ms" for c in self.changes)
        wall = self.wall_s or 1.0
        return (f"{version}: model change at {FPS:.0f} fps: {self.published} frames published, {self.answered} "
                f"answered, longest time without an answer {self.longest_gap_s * 1000:.0f} ms "
                f"(frame interval {1000 / FPS:.0f} ms); config written -> acknowledged: {acks}; "
                f"CPU over {self.wall_s:.1f} s: plugin {100 * self.cpu_plugin_s / wall:.0f}%, "
                f"kuiperd {100 * self.cpu_kuiperd_s / wall:.0f}% of one core ({os.cpu_count()} cores)")


def change_model(k: Kuiperd, plugin_dir: Path, config: Dict[str, Any], timeout: float = 60) -> Change:
    before = status(plugin_dir).get("generation", 0)
    written = time.monotonic()
    write_json(plugin_dir / "pyai_config.json", config)
    deadline = written + timeout
    while time.monotonic() < deadline:
        st = status(plugin_dir)
        if st.get("generation", 0) > before:
            return Change(written, time.monotonic(), st)
        if st.get("error") and st.get("generation", 0) == before and "refused" in st["error"]:
            raise AssertionError(f"model change refused: {st['error']}\n{k.log_tail()}")
        time.sleep(0.01)
    raise AssertionError(f"no acknowledgement within {timeout:.0f} s: {status(plugin_dir)}\n{k.log_tail()}")


def stream_through_changes(k: Kuiperd, mqtt: MqttCollector, frame_topic: str, result_topic: str, frame: bytes,
                           models_dir: Path, settle_s: float = 1.0) -> Run:
    """Stream; switch to the other model; stream; switch back; stream. Restores the config."""
    plugin_dir = k.plugin_dir
    config_path = plugin_dir / "pyai_config.json"
    original = json.loads(config_path.read_text())
    (plugin_dir / "b.tflite").write_bytes(relabelled(models_dir / OTHER_MODEL))
    other = dict(original, model="b.tflite", labels="")
    # The serving plugin process (not its guardian, which only waits).
    plugin = [pid for pid in pids_with_cwd_under(plugin_dir) if "--guard" not in cmdline(pid)]
    kuiperd = [k.proc.pid] if k.proc is not None else []
    cpu0, kcpu0, t0 = cpu_seconds(plugin), cpu_seconds(kuiperd), time.monotonic()
    cam = Camera(mqtt, frame_topic, result_topic, frame)
    changes: List[Change] = []
    try:
        time.sleep(settle_s)
        changes.append(change_model(k, plugin_dir, other))
        time.sleep(settle_s)
        changes.append(change_model(k, plugin_dir, original))
        time.sleep(settle_s)
    finally:
        cam.finish()
        write_json(config_path, original)
    wall, cpu, kcpu = time.monotonic() - t0, cpu_seconds(plugin) - cpu0, cpu_seconds(kuiperd) - kcpu0
    times = [t for t, _ in cam.answers]
    # From the first answer, so the wait for the rule's start does not count.
    gaps = [b - a for a, b in zip(times, times[1:])]
    return Run(len(cam.published), len(cam.answers), max(gaps) if gaps else float("inf"), changes,
               [label for _, label in cam.answers], times, list(cam.published), wall, cpu, kcpu)


SAVE_ENV = "PYAI_MODEL_CHANGE_SAVE"


def save(run: Run, version: str) -> None:
    """Append the run as one JSON line to $PYAI_MODEL_CHANGE_SAVE, if set (docs/own-model.md's numbers)."""
    path = os.environ.get(SAVE_ENV)
    if not path:
        return
    import platform
    import subprocess

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "")
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "kuiperd": version, "machine": platform.machine(), "cpu": cpu,
        "cores": os.cpu_count(), "fps": FPS, "published": run.published, "answered": run.answered,
        "longest_gap_ms": round(run.longest_gap_s * 1000, 1),
        "acknowledged_ms": [round((c.acknowledged - c.written) * 1000, 1) for c in run.changes],
        "cpu_plugin_pct": round(100 * run.cpu_plugin_s / (run.wall_s or 1.0), 1),
        "cpu_kuiperd_pct": round(100 * run.cpu_kuiperd_s / (run.wall_s or 1.0), 1),
        "summary": run.summary(version),
    }
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def sent_before(run: Run, t: float) -> int:
    """How many frames were sent before ``t``."""
    return sum(1 for s in run.sent if s < t)


def model_of(label: Optional[str]) -> str:
    return "b" if label and label.split(":", 1)[-1].startswith(PREFIX) else "a"
