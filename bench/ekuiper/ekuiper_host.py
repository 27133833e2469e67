"""The real host for ``bench/ekuiper/ekuiper_bench.py``: mosquitto + kuiperd v2.4.0 with pyai
and the tutorial plugin installed over REST, one rule per measured load, a result
collector, and the process counters (CPU, RSS) the bench reports.

Everything host-side is ``tests/ekuiper/harness.py`` (the real-host test suite's
harness); this module only adds what a load measurement needs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tests.ekuiper import build_kuiperd
from tests.ekuiper.harness import Kuiperd, Mosquitto, RestError, make_venv, pids_with_cwd_under, wait_for

from bench.ekuiper import ekuiper_plugins

log = logging.getLogger("pyai.bench.ekuiper")

VERSION = "v2.4.0"
STREAM = "tfdemo"
# One topic per frame (see ekuiper_cameras.py): the stream reads them all.
STREAM_SQL = f'CREATE STREAM {STREAM} () WITH (DATASOURCE="{STREAM}/#", FORMAT="BINARY")'
RESULT_PREFIX = "bench/result"


@dataclass(frozen=True)
class RuleKind:
    """What a load runs: the tutorial's rule with the topic of each frame added."""

    key: str
    title: str
    sql: str
    window: int = 1  # frames per function call
    plugin: Optional[str] = None  # the plugin folder whose processes the rule calls (None: no function)


def _windowed(key: str, n: int) -> RuleKind:
    return RuleKind(key, f"pyai labelImages, CountWindow({n})",
                    f"SELECT labelImages(self) AS labels, collect(meta(topic)) AS topics FROM {STREAM} "
                    f"GROUP BY CountWindow({n})", window=n, plugin="pyai")


RULES: Dict[str, RuleKind] = {
    # The host's ceilings: the same rule calling a plugin that answers a constant at
    # once (pyai's own transport, no decode), and the rule with no function at all.
    "ceiling": RuleKind("ceiling", "constant-reply plugin (host ceiling)",
                        f"SELECT {ekuiper_plugins.CEILING_SYMBOL}(self)[0]->label AS label, meta(topic) AS topic "
                        f"FROM {STREAM}", plugin=ekuiper_plugins.CEILING),
    "nofunc": RuleKind("nofunc", "the rule with no function",
                       f"SELECT 'none' AS label, meta(topic) AS topic FROM {STREAM}"),
    "pyai": RuleKind("pyai", "pyai labelImage",
                     f"SELECT labelImage(self)[0]->label AS label, meta(topic) AS topic FROM {STREAM}", plugin="pyai"),
    "labelImages4": _windowed("labelImages4", 4),
    "labelImages": _windowed("labelImages", 8),
    "tutorial": RuleKind("tutorial", "tutorial plugin (baseline, LiteRT)",
                         f"SELECT {ekuiper_plugins.TUTORIAL_SYMBOL}(self)[0]->label AS label, meta(topic) AS topic "
                         f"FROM {STREAM}", plugin=ekuiper_plugins.TUTORIAL),
    "tutorial_tflite": RuleKind("tutorial_tflite", "tutorial plugin as written (tflite_runtime)",
                                f"SELECT {ekuiper_plugins.TUTORIAL_TFL_SYMBOL}(self)[0]->label AS label, "
                                f"meta(topic) AS topic FROM {STREAM}", plugin=ekuiper_plugins.TUTORIAL_TFL),
}


def parse_frame_topic(topic: str) -> Optional[Tuple[str, int, int, int]]:
    """``tfdemo/<tag>/c<cam>/<seq>/<t_ns>`` -> (tag, cam, seq, t_ns)."""
    parts = topic.split("/")
    if len(parts) != 5 or not parts[2].startswith("c"):
        return None
    try:
        return parts[1], int(parts[2][1:]), int(parts[3]), int(parts[4])
    except ValueError:
        return None


@dataclass
class Result:
    arrived_ns: int
    topics: List[str]
    ok: List[bool]  # per frame: labelled (False: an error in place of the frame's list)
    windowed: bool = False  # a window rule's result (``topics``), even of a window of one frame


def parse_result(arrived_ns: int, payload: bytes) -> Optional[Result]:
    try:
        msg = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    if "topics" in msg:
        topics = list(msg.get("topics") or [])
        labels = msg.get("labels") or []
        ok = [isinstance(x, list) and bool(x) for x in labels]
        ok += [False] * (len(topics) - len(ok))
        return Result(arrived_ns, topics, ok[: len(topics)], windowed=True)
    if "topic" in msg:
        return Result(arrived_ns, [msg["topic"]], [bool(msg.get("label"))])
    return None


class Collector:
    """Subscribes to every rule's result topic; keeps (arrival time, payload)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self._lock = threading.Lock()
        self._msgs: List[Tuple[int, bytes]] = []
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pyai-bench-results-{os.getpid()}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        self._client.subscribe(f"{RESULT_PREFIX}/#", qos=0)
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK for the result topics")

    def _on_message(self, client, userdata, msg) -> None:
        # Stamp first, parse later: the collector shares the CPU with everything else.
        t = time.monotonic_ns()
        with self._lock:
            self._msgs.append((t, msg.payload))

    def count(self) -> int:
        with self._lock:
            return len(self._msgs)

    def take(self) -> List[Result]:
        with self._lock:
            msgs, self._msgs = self._msgs, []
        return [r for r in (parse_result(t, p) for t, p in msgs) if r is not None]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (its threads, not its children)."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:  # noqa: BLE001 - process gone (psutil.Error) or no psutil
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine, all cores, since boot (/proc/stat's
    first line: everything but idle and iowait), to show how busy a step's machine was."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest and guest_nice (fields 8, 9) are already counted in user and nice.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Peak RSS of some processes, sampled every ``interval`` s in a thread."""

    def __init__(self, pids: Dict[str, List[int]], interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self.peak: Dict[str, float] = {}
        self.first: Dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for name, pids in self.pids.items():
            total = sum(v for v in (rss_mb(p) for p in pids) if v is not None)
            self.first.setdefault(name, total)
            self.peak[name] = max(self.peak.get(name, 0.0), total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()


@dataclass
class Host:
    """mosquitto + kuiperd with both plugins installed and the stream created."""

    workdir: Path
    broker: Mosquitto
    kuiperd: Kuiperd
    python: Path
    install_seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def rest(self):
        return self.kuiperd.rest

    def plugin_pids(self, name: Optional[str] = None) -> List[int]:
        """The plugins' processes (guardians included), or those of plugin ``name``."""
        portable = self.kuiperd.base / "plugins" / "portable"
        folder = portable / name if name else portable
        return pids_with_cwd_under(folder) if folder.exists() else []

    def process_groups(self, plugin: Optional[str] = None) -> Dict[str, List[int]]:
        """pids per group; ``plugin``: the rule's plugin (its processes as ``plugin``,
        every other plugin's as ``other_plugins``)."""
        mine = self.plugin_pids(plugin) if plugin else []
        return {"kuiperd": [self.kuiperd.proc.pid], "plugin": mine,
                "other_plugins": [p for p in self.plugin_pids() if p not in mine],
                "mosquitto": [self.broker.proc.pid], "bench": [os.getpid()]}

    def create_rule(self, rule_id: str, sql: str, options: Optional[Dict[str, Any]] = None) -> None:
        action = {"mqtt": {"server": self.broker.url, "topic": f"{RESULT_PREFIX}/{rule_id}", "sendSingle": True}}
        try:
            self.rest.create_rule(rule_id, sql, [action], options)
        except RestError as exc:
            raise RuntimeError(f"{exc}\n{self.kuiperd.log_tail()}") from None

    def restart_kuiperd(self, env: Dict[str, str]) -> List[str]:
        """kuiperd stopped and started again on the same base (installs, stream) with
        ``env`` added to its environment. The plugin processes it starts inherit it:
        how a ``PYAI_*`` setting reaches pyai as a user would set it, without touching
        the installed folder. Returns the processes left by the old kuiperd (killed)."""
        # A plugin process's guardian leaves by itself once kuiperd is gone: let it,
        # then kill whatever is left, so no process of the old config lives on.
        left = self.kuiperd.stop(settle=10)
        self.kuiperd.extra_env.update(env)
        self.kuiperd.start()
        return left

    def stop(self) -> List[str]:
        left = self.kuiperd.stop()
        self.broker.stop()
        return left


def start_host(workdir: Path, pyai_zip: Path, tutorial_zip: Optional[Path] = None,
               tutorial_tfl_zip: Optional[Path] = None, ceiling_zip: Optional[Path] = None) -> Host:
    binary = build_kuiperd.cached_binary(VERSION)
    if binary is None:
        binary = build_kuiperd.build(VERSION)
    broker = Mosquitto(workdir / "mosquitto").start()
    try:
        python = make_venv(workdir / "venv")
        # pythonBin in kuiper.yaml is what the plugins run with; the harness takes any
        # venv (tox's) off kuiperd's PATH.
        k = Kuiperd(binary, build_kuiperd.version_dir(VERSION) / "etc", workdir / "kuiper", broker.url,
                    python_bin=str(python))
        k.start()
    except BaseException:
        broker.stop()
        raise
    host = Host(workdir, broker, k, python)
    try:
        # The tutorial's REST call for pyai (its install.sh finds pythonBin in kuiper.yaml) ...
        t0 = time.monotonic()
        status, answer = k.rest.install_plugin(pyai_zip)
        if status >= 300:
            raise RuntimeError(f"installing pyai: HTTP {status}: {answer}\n{k.log_tail()}")
        host.install_seconds["pyai"] = time.monotonic() - t0
        # ... and the same for the tutorial's plugin(s), naming the interpreter (shellParas).
        tutorials = [(key, name, zip_path) for key, name, zip_path in (
            ("tutorial", ekuiper_plugins.TUTORIAL, tutorial_zip),
            ("tutorial_tflite", ekuiper_plugins.TUTORIAL_TFL, tutorial_tfl_zip)) if zip_path is not None]
        for key, name, zip_path in tutorials:
            t0 = time.monotonic()
            status, answer = k.rest.call("POST", "/plugins/portables",
                                         {"name": name, "file": zip_path.resolve().as_uri(),
                                          "shellParas": ["--python", str(python)]}, timeout=600)
            if status >= 300:
                raise RuntimeError(f"installing plugin {name}: HTTP {status}: {answer}\n{k.log_tail()}")
            host.install_seconds[key] = time.monotonic() - t0
        if ceiling_zip is not None:
            # Runs on pyai's own transport with the pythonBin pyai's install.sh filled: nothing to install.
            t0 = time.monotonic()
            status, answer = k.rest.call("POST", "/plugins/portables",
                                         {"name": ekuiper_plugins.CEILING, "file": ceiling_zip.resolve().as_uri()},
                                         timeout=600)
            if status >= 300:
                raise RuntimeError(f"installing plugin {ekuiper_plugins.CEILING}: HTTP {status}: {answer}\n"
                                   f"{k.log_tail()}")
            host.install_seconds["ceiling"] = time.monotonic() - t0
        plugins = 1 + len(tutorials) + (ceiling_zip is not None)
        k.rest.create_stream(STREAM_SQL)
        wait_for(lambda: len(host.plugin_pids()) >= plugins, 60, "every plugin process")
    except BaseException:
        host.stop()
        raise
    return host
