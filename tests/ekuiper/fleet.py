"""Several kuiperd nodes behind one mosquitto: what ``test_fleet.py`` needs.

- ``Node``: a ``Kuiperd`` in a mount namespace of its own whose ``/tmp`` is a folder
  of the node (eKuiper's plugin IPC paths are fixed under ``/tmp``: two nodes on one
  machine would take each other's sockets), killed (``SIGKILL``), frozen (``SIGSTOP``)
  and resumed (``SIGCONT``) with its plugin processes.
- ``Watchdog``: what the docs ship: a node that hangs is killed and started again
  (``GET /ping`` every second, 3 misses), and a rule whose MQTT source connected
  again is restarted (eKuiper's MQTT 5 client does not subscribe again by itself).
- ``Results``: every sink message of every node, with its arrival time.
- ``Cameras``: ``bench/ekuiper/ekuiper_cameras.py`` as a process (frames on
  ``tfdemo/c<camera>/<seq>/<t_ns>``).
- ``Timeline``: frames published vs labelled: lost, duplicates, wrong labels, and
  when the fleet's rate is back after an event.

Needs root (``unshare --mount``, ``mount --bind``) and the nodes' folders outside
``/tmp`` (the bind mount hides the machine's ``/tmp`` from the node).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tests.ekuiper.harness import Kuiperd, Rest, RestError, pids_with_cwd_under

log = logging.getLogger("ekuiper.fleet")

REPO = Path(__file__).resolve().parents[2]
CAMERAS_SCRIPT = REPO / "bench" / "ekuiper" / "ekuiper_cameras.py"
FRAME_PREFIX = "tfdemo"
RESULT_PREFIX = "fleet/result"

# The shell run inside the node's new mount namespace: its /tmp becomes the node's
# folder ($0), then kuiperd ("$@") replaces the shell, so the pid is kuiperd's.
PRIVATE_TMP = 'mount --bind "$0" /tmp && exec "$@"'


def private_tmp_launcher(tmp: Path) -> List[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_TMP, str(tmp)]


def private_tmp_error() -> Optional[str]:
    """Why a node cannot get a private /tmp here (None when it can)."""
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               'mount -t tmpfs none /tmp'], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit {proc.returncode}")


# -- configuration of the nodes (all through REST) ----------------------------------------

@dataclass(frozen=True)
class MqttSettings:
    """The MQTT source's and sink's connection settings of one variant."""

    protocol: str  # "3.1.1" or "5"
    qos: int = 1
    # MQTT 5 only: 0 = the broker drops the session (and the group's share with it) as
    # soon as the connection is gone; eKuiper's default is 60 s.
    session_expiry_s: Optional[int] = 0

    @property
    def key(self) -> str:
        return "v5" if self.protocol == "5" else "v311"

    def source_conf(self, server: str) -> Dict[str, Any]:
        conf: Dict[str, Any] = {"server": server, "protocolVersion": self.protocol, "qos": self.qos}
        if self.protocol == "5" and self.session_expiry_s is not None:
            conf["sessionExpiryIntervalSeconds"] = self.session_expiry_s
        return conf

    def sink_action(self, server: str, topic: str) -> Dict[str, Any]:
        return {"mqtt": {"server": server, "topic": topic, "protocolVersion": self.protocol, "qos": self.qos,
                         "sendSingle": True}}


def put_source_conf(rest: Rest, conf_key: str, conf: Mapping[str, Any]) -> None:
    rest.ok("PUT", f"/metadata/sources/mqtt/confKeys/{conf_key}", dict(conf))


def create_stream(rest: Rest, name: str, datasource: str, conf_key: str) -> None:
    """``CREATE STREAM`` (replacing one of that name)."""
    rest.call("DELETE", f"/streams/{name}")
    rest.create_stream(f'CREATE STREAM {name} () WITH (DATASOURCE="{datasource}", FORMAT="BINARY", '
                       f'CONF_KEY="{conf_key}")')


def label_sql(stream: str) -> str:
    """The tutorial's rule, plus the frame's topic (names the frame: camera, seq, time)."""
    return f"SELECT labelImage(self)[0]->label AS label, meta(topic) AS topic FROM {stream}"


# -- one node -----------------------------------------------------------------------------

class Node(Kuiperd):
    """A kuiperd with a private /tmp; ``name`` tags its sink topic."""

    def __init__(self, name: str, binary: Path, etc_src: Path, base: Path, broker_url: str, python_bin: str,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.name = name
        # The watchdog's thread and the test both kill and start nodes: one at a time.
        self.lock = threading.RLock()
        self.tmp = base / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(binary, etc_src, base, broker_url, python_bin=python_bin, env=env,
                         launcher=private_tmp_launcher(self.tmp))

    def _pids(self) -> List[int]:
        """kuiperd (its session's leader) and the processes working in its folder."""
        pids = pids_with_cwd_under(self.base)
        if self.proc and self.proc.poll() is None:
            pids.insert(0, self.proc.pid)
        return pids

    def signal_all(self, sig: int) -> List[int]:
        pids = self._pids()
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)  # the session kuiperd leads: the plugin and guardian too
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def start(self, timeout: float = 60) -> "Node":
        with self.lock:
            super().start(timeout)
        return self

    def kill(self) -> None:
        """``kill -9`` of kuiperd, its plugin and guardian (a crash, or a power cut)."""
        with self.lock:
            self._kill()

    def _kill(self) -> None:
        self.signal_all(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)
            self.proc = None
        deadline = time.monotonic() + 10
        while pids_with_cwd_under(self.base) and time.monotonic() < deadline:
            time.sleep(0.05)

    def freeze(self) -> None:
        self.signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_all(signal.SIGCONT)

    def alive(self, timeout: float = 1.0) -> bool:
        try:
            status, _ = self.rest.call("GET", "/ping", timeout=timeout)
            return status == 200
        except OSError:
            return False


class LatePluginRegistry:
    """kuiperd v2.x's boot race made certain: the node's ``pyai.json`` becomes a FIFO
    whose writer answers ``delay_s`` after kuiperd opens it, so pyai's symbols are
    registered that long after kuiperd recovered its rules (it parses portable plugins
    in goroutines, plugin/portable/manager.go ``syncRegistry``). The file is put back
    once read; ``registered`` is set then (``at``: when, monotonic)."""

    def __init__(self, node: Node, delay_s: float) -> None:
        self.path = node.plugin_dir / f"{node.plugin_dir.name}.json"
        self.delay_s = delay_s
        self.registered = threading.Event()
        self.at: Optional[float] = None
        self._closing = False
        self._content = self.path.read_bytes()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "LatePluginRegistry":
        self.path.unlink()
        os.mkfifo(self.path)
        self._thread.start()
        return self

    def _serve(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # until a reader opens it
        try:
            if not self._closing:
                time.sleep(self.delay_s)
            os.write(fd, self._content)
        finally:
            os.close(fd)
            self._put_back()
            self.at = time.monotonic()
            self.registered.set()

    def _put_back(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_bytes(self._content)
        os.replace(tmp, self.path)

    def __exit__(self, *exc: Any) -> None:
        if not self.registered.is_set():
            # kuiperd never read it: be the reader, so the writer lets go.
            self._closing = True
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                self.registered.wait(5)
                os.close(fd)
            except OSError:
                pass
        self._thread.join(5)
        if self.path.is_fifo():
            self._put_back()


# -- the watchdog ---------------------------------------------------------------------------

@dataclass
class WatchdogEvent:
    node: str
    what: str  # "killed" | "restarted" | "restart failed" | "rule <id> restarted (HTTP <status>)"
    at: float  # time.monotonic()


class Watchdog:
    """Two probes per node, the watchdog docs/scaling-out.md ships:

    - liveness: ``GET /ping`` with ``timeout`` every ``interval``; ``misses`` failures
      in a row -> kill -9 and start again (a hung node becomes a crashed one, which
      the broker sees at once). The same as a Kubernetes livenessProbe
      (periodSeconds 1, timeoutSeconds 1, failureThreshold 3). ``misses=0``: off.
    - resubscribe: for each of ``rules``, when a source's
      ``connection_last_connected_time`` moves (its MQTT client connected again),
      ``POST /rules/<id>/restart``: eKuiper's MQTT 5 client (v2.4.0, and master at
      the time of writing) sends an empty SUBSCRIBE when it reconnects, which the
      broker refuses as malformed, so the source never gets its subscription back
      on its own (internal/io/mqtt/v5client/client.go ``Subscribe``)."""

    def __init__(self, nodes: Sequence[Node], interval: float = 1.0, timeout: float = 1.0, misses: int = 3,
                 rules: Sequence[str] = ()) -> None:
        self.nodes = list(nodes)
        self.interval, self.timeout, self.misses = interval, timeout, misses
        self.rules = list(rules)  # may be changed while it runs
        self.events: List[WatchdogEvent] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(n,), daemon=True) for n in self.nodes]

    def __enter__(self) -> "Watchdog":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)

    def _connected_at(self, node: Node, rule: str) -> Optional[int]:
        try:
            status, answer = node.rest.call("GET", f"/rules/{rule}/status", timeout=self.timeout)
        except OSError:
            return None
        if status != 200 or not isinstance(answer, dict):
            return None
        times = [int(v) for k, v in answer.items()
                 if k.startswith("source_") and k.endswith("_connection_last_connected_time") and isinstance(v, (int, float))]
        return max(times) if times else None

    def _check_rules(self, node: Node, seen: Dict[str, Optional[int]]) -> None:
        for rule in list(self.rules):
            at = self._connected_at(node, rule)
            before = seen.get(rule)
            seen[rule] = at
            if at is not None and before is not None and at > before:
                status, answer = node.rest.call("POST", f"/rules/{rule}/restart", timeout=10)
                self.events.append(WatchdogEvent(node.name, f"rule {rule} restarted (HTTP {status})", time.monotonic()))
                seen[rule] = None  # the restarted source connects anew: not a reconnect

    def _watch(self, node: Node) -> None:
        missed = 0
        seen: Dict[str, Optional[int]] = {}
        while not self._stop.is_set():
            started = time.monotonic()
            if node.proc is None:  # stopped on purpose (a test's kill): not ours to restart
                missed = 0
                seen.clear()
            elif node.alive(self.timeout):
                missed = 0
                self._check_rules(node, seen)
            elif self.misses:
                missed += 1
                if missed >= self.misses:
                    missed = 0
                    seen.clear()
                    with node.lock:
                        if node.proc is None:  # the test killed it meanwhile
                            continue
                        node.kill()
                        self.events.append(WatchdogEvent(node.name, "killed", time.monotonic()))
                        try:
                            node.start()
                            self.events.append(WatchdogEvent(node.name, "restarted", time.monotonic()))
                        except (RuntimeError, TimeoutError) as exc:
                            log.error("watchdog: %s did not start again: %s", node.name, exc)
                            self.events.append(WatchdogEvent(node.name, "restart failed", time.monotonic()))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


# -- results and cameras ----------------------------------------------------------------------

@dataclass
class Result:
    node: str
    topic: str  # the frame's
    label: Optional[str]
    at_ns: int  # arrival, time.monotonic_ns()


class Results:
    """Every sink message under ``fleet/result/<node>``."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.items: List[Result] = []
        self.bad: List[bytes] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pyai-fleet-results-{os.getpid()}")
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect("127.0.0.1", port, keepalive=10)
        self._client.loop_start()
        self._client.subscribe(f"{RESULT_PREFIX}/#", qos=1)
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK for the results")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic_ns()
        node = msg.topic.rsplit("/", 1)[-1]
        try:
            body = json.loads(msg.payload)
            item = Result(node, str(body["topic"]), body.get("label"), now)
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.bad.append(bytes(msg.payload))
            return
        with self._lock:
            self.items.append(item)

    def snapshot(self) -> List[Result]:
        with self._lock:
            return list(self.items)

    def clear(self) -> None:
        with self._lock:
            self.items.clear()
            self.bad.clear()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@dataclass
class Cameras:
    """``ekuiper_cameras.py`` publishing ``cameras`` x ``fps`` for ``seconds``."""

    port: int
    frames: Sequence[Path]
    cameras: int
    fps: float
    seconds: float
    qos: int = 1
    offset: int = 0
    start_delay: float = 0.5
    t0: float = 0.0  # time.monotonic() of the first publish
    _proc: Optional[subprocess.Popen] = None

    def start(self) -> "Cameras":
        self.t0 = time.monotonic() + self.start_delay
        cmd = [sys.executable, str(CAMERAS_SCRIPT), "--port", str(self.port), "--cameras", str(self.cameras),
               "--fps", str(self.fps), "--seconds", str(self.seconds), "--qos", str(self.qos),
               "--prefix", FRAME_PREFIX, "--start-at", repr(self.t0), "--frame-offset", str(self.offset)]
        for f in self.frames:
            cmd += ["--frame", str(f)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def at(self, seconds: float) -> None:
        """Sleep until ``seconds`` after the first publish."""
        time.sleep(max(0.0, self.t0 + seconds - time.monotonic()))

    def stop(self) -> None:
        """End the publisher if it still runs (the script around it failed): it must not
        publish into the next run's stream, nor stay unreaped with its pipes open."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()

    def wait(self) -> Dict[str, Any]:
        assert self._proc is not None
        out, err = self._proc.communicate(timeout=self.seconds + 60)
        if self._proc.returncode != 0:
            raise RuntimeError(f"cameras exited {self._proc.returncode}: {err[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])


# -- what happened ------------------------------------------------------------------------------

def parse_frame_topic(topic: str) -> Tuple[int, int, int]:
    """``tfdemo/c<camera>/<seq>/<t_ns>`` -> (camera, seq, t_ns)."""
    _, cam, seq, t_ns = topic.split("/")
    return int(cam[1:]), int(seq), int(t_ns)


@dataclass
class Timeline:
    """Frames published (per camera: 0..n-1, at t0 + seq/fps + phase) vs the labels."""

    cameras: int
    fps: float
    per_camera: int
    t0: float
    results: List[Result]
    # A frame labelled later than this after its publish does not count for the rate.
    in_time_s: float = 2.0
    counts: Counter = field(default_factory=Counter)
    first: Dict[Tuple[int, int], Result] = field(default_factory=dict)
    publish_s: Dict[Tuple[int, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.results:
            cam, seq, t_ns = parse_frame_topic(r.topic)
            key = (cam, seq)
            if cam >= self.cameras:  # the warm-up's camera
                continue
            self.counts[key] += 1
            self.first.setdefault(key, r)
            self.publish_s[key] = t_ns / 1e9

    def planned_s(self, cam: int, seq: int) -> float:
        return self.t0 + seq / self.fps + cam / (self.fps * self.cameras)

    def frames(self) -> List[Tuple[int, int]]:
        return [(c, s) for c in range(self.cameras) for s in range(self.per_camera)]

    @property
    def published(self) -> int:
        return self.cameras * self.per_camera

    def lost(self) -> List[Tuple[int, int]]:
        return [k for k in self.frames() if k not in self.counts]

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def strays(self) -> int:
        """Results for frames this run did not publish."""
        return sum(1 for k in self.counts if k[1] >= self.per_camera)

    def by_node(self) -> Dict[str, int]:
        return dict(Counter(r.node for r in self.first.values()))

    def served_in_time(self, key: Tuple[int, int]) -> bool:
        r = self.first.get(key)
        return r is not None and r.at_ns / 1e9 - self.publish_s[key] <= self.in_time_s

    def late(self) -> int:
        return sum(1 for k in self.first if not self.served_in_time(k))

    def lost_between(self, start: float, end: float) -> int:
        return sum(1 for k in self.lost() if start <= self.planned_s(*k) < end)

    def recovery_s(self, event: float, until: Optional[float] = None, window: float = 1.0, step: float = 0.1,
                   share: float = 0.95) -> Optional[float]:
        """Seconds after ``event`` from which every ``window``-long span of publish time
        (up to ``until``) had >= ``share`` of its frames labelled within ``in_time_s``:
        when the fleet's rate was back. None if it never was."""
        end = until if until is not None else self.t0 + self.per_camera / self.fps
        planned = sorted((self.planned_s(*k), self.served_in_time(k)) for k in self.frames())
        starts = [event + i * step for i in range(int((end - window - event) / step) + 1)]
        bad_until = event
        for s in starts:
            span = [ok for t, ok in planned if s <= t < s + window]
            if span and sum(span) < share * len(span):
                bad_until = s + step
        if bad_until + window > end:
            return None
        return round(bad_until - event, 2)

    def summary(self, events: Mapping[str, float] = ()) -> Dict[str, Any]:
        out: Dict[str, Any] = {"published": self.published, "labelled": len(self.first), "lost": len(self.lost()),
                               "duplicates": self.duplicates(), "late": self.late(), "by_node": self.by_node(),
                               "strays": self.strays()}
        ordered = sorted(events.items(), key=lambda kv: kv[1])
        for i, (name, at) in enumerate(ordered):
            until = ordered[i + 1][1] if i + 1 < len(ordered) else None
            # A frame published shortly before an event may be on its way through
            # the node it hits: its loss counts for the event.
            out[name] = {"at_s": round(at - self.t0, 2), "recovery_s": self.recovery_s(at, until),
                         "lost": self.lost_between(at - self.in_time_s,
                                                   until - self.in_time_s if until is not None else float("inf"))}
        return out


def rest_or_fail(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RestError as exc:
        raise AssertionError(f"{what}: {exc}") from None


# -- cameras pinned to nodes ---------------------------------------------------------------

@dataclass
class PinEvent:
    camera: int
    what: str  # "moved" | "moved back"
    node: str
    at: float


class Pinning:
    """Each camera on one node at a time, for the unchanged-frame gate (its state is per
    call site, so it needs all of one camera's frames in one place). Every node has
    camera c's rule on a shared group of its own (``$share/cam<c>/tfdemo/c<c>/#``:
    should two nodes hold it for a moment, each frame still goes to one); it runs on
    the camera's home node and is created stopped on its backup. When the home node
    stops answering ``/ping``, the rule is started on the backup; when the home node
    is back (kuiperd restarts the rules it ran), the backup's rule is stopped."""

    def __init__(self, homes: Mapping[int, Tuple[Node, Node]], rule_of: Any, interval: float = 0.25,
                 misses: int = 2) -> None:
        self.homes = dict(homes)
        self.rule_of = rule_of  # camera -> rule id
        self.interval, self.misses = interval, misses
        self.events: List[PinEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Pinning":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        missed = {c: 0 for c in self.homes}
        moved = {c: False for c in self.homes}
        while not self._stop.is_set():
            for cam, (home, backup) in self.homes.items():
                rule = self.rule_of(cam)
                up = home.alive(self.interval)
                missed[cam] = 0 if up else missed[cam] + 1
                try:
                    if not moved[cam] and missed[cam] >= self.misses:
                        backup.rest.ok("POST", f"/rules/{rule}/start")
                        moved[cam] = True
                        self.events.append(PinEvent(cam, "moved", backup.name, time.monotonic()))
                    elif moved[cam] and up and home.rest.rule_status(rule).get("status") == "running":
                        backup.rest.ok("POST", f"/rules/{rule}/stop")
                        moved[cam] = False
                        self.events.append(PinEvent(cam, "moved back", home.name, time.monotonic()))
                except (RestError, OSError) as exc:
                    log.warning("pinning: camera %d: %s", cam, exc)
            self._stop.wait(self.interval)
