"""A real eKuiper host for the tests: mosquitto and kuiperd on loopback, in temp folders.

- ``Mosquitto``: a broker on a free 127.0.0.1 port with its own config (never the
  system service).
- ``Kuiperd``: one kuiperd in a temporary base folder (``KuiperBaseKey``: etc/ data/
  log/ plugins/), REST on a free loopback port, MQTT source pointed at our broker,
  ``portable.pythonBin`` set in its ``etc/kuiper.yaml`` or through the environment.
  It can be stopped and started again on the same base; its log stays readable.
- ``Rest``: the few REST calls the suite needs (urllib).
- ``MqttCollector``: publish frames and collect sink messages with timeouts.

The host's IPC paths are fixed (/tmp/plugin_pyai.ipc, /tmp/func_*.ipc), so two
hosts must never run at once: run the suite under ``flock /tmp/pyai-host.lock``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

log = logging.getLogger("ekuiper.harness")

PLUGIN = "pyai"

# kuiperd v2.x parses its installed portable plugins in goroutines at boot while it
# recovers its rules: a rule planned before pyai's symbols are registered stops with
# "function labelImage not found" and stays stopped (docs/faults.md, "A rule stopped
# after kuiperd restarts"). kuiperd's own cure, as the docs give it: a restart strategy
# on the rule, which its rule patrol applies to a rule stopped by an error, every second
# with RULE_PATROL_ENV (v1.14.7 registers plugins before its rules and needs neither).
RULE_RESTORE_OPTIONS: Dict[str, Any] = {"restartStrategy": {"attempts": 10, "delay": 1000}}
RULE_PATROL_KEY = "KUIPER__BASIC__RULEPATROLINTERVAL"
RULE_PATROL_ENV = {RULE_PATROL_KEY: "1s"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``cond`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pids_with_cwd_under(folder: Path) -> List[int]:
    """Processes whose working directory is inside ``folder`` (the plugin's python
    processes run in plugins/portable/<name>/)."""
    root = str(folder.resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue  # gone, or not ours to read
        if cwd.endswith(" (deleted)"):
            cwd = cwd[: -len(" (deleted)")]
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "<gone>"


def kill_pids(pids: List[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop_process(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("pid %s did not stop in %.0f s; killing it", proc.pid, grace)
        proc.kill()
        proc.wait(10)


# -- mosquitto ------------------------------------------------------------------------


class Mosquitto:
    def __init__(self, workdir: Path, binary: str = "mosquitto", extra_conf: str = "") -> None:
        self.workdir = workdir
        self.binary = shutil.which(binary) or binary
        self.extra_conf = extra_conf  # more mosquitto.conf lines (e.g. max_keepalive)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10, same_port: bool = False) -> "Mosquitto":
        """Start on a free port (or, with ``same_port``, on the port of the last start:
        a broker restarted under its clients)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (same_port and self.port):
            self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            # Frames up to a few MB; the default is unlimited but be explicit.
            "message_size_limit 0\n"
            + self.extra_conf
        )
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, timeout, "mosquitto to listen")
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log_tail()}")
        return self

    def log_tail(self, n: int = 20) -> str:
        path = self.workdir / "mosquitto.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc:
            _stop_process(self.proc, 5)
            self.proc = None


# -- REST -----------------------------------------------------------------------------


class RestError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body.strip()[:2000]}")
        self.status = status
        self.body = body


class Rest:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read().decode(errors="replace")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def ok(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        status, answer = self.call(method, path, body, timeout)
        if status >= 300:
            raise RestError(method, path, status, answer if isinstance(answer, str) else json.dumps(answer))
        return answer

    # plugins
    def install_plugin(self, zip_path: Path, shell_paras: Optional[List[str]] = None,
                       timeout: float = 600) -> Tuple[int, Any]:
        # The tutorial's call; the host answers after install.sh has run.
        body: Dict[str, Any] = {"name": PLUGIN, "file": zip_path.resolve().as_uri()}
        if shell_paras is not None:
            body["shellParas"] = shell_paras
        return self.call("POST", "/plugins/portables", body, timeout)

    def update_plugin(self, zip_path: Path, timeout: float = 600) -> Tuple[int, Any]:
        return self.call("PUT", f"/plugins/portables/{PLUGIN}",
                         {"name": PLUGIN, "file": zip_path.resolve().as_uri()}, timeout)

    def delete_plugin(self, timeout: float = 60) -> Tuple[int, Any]:
        return self.call("DELETE", f"/plugins/portables/{PLUGIN}", None, timeout)

    def plugin(self) -> Tuple[int, Any]:
        return self.call("GET", f"/plugins/portables/{PLUGIN}")

    def plugin_status(self) -> Tuple[int, Any]:
        return self.call("GET", f"/plugins/portables/{PLUGIN}/status")

    # streams and rules
    def create_stream(self, sql: str) -> Any:
        return self.ok("POST", "/streams", {"sql": sql})

    def create_rule(self, rule_id: str, sql: str, actions: List[Dict[str, Any]],
                    options: Optional[Dict[str, Any]] = None) -> Any:
        body: Dict[str, Any] = {"id": rule_id, "sql": sql, "actions": actions}
        if options:
            body["options"] = options
        return self.ok("POST", "/rules", body)

    def delete_rule(self, rule_id: str) -> Tuple[int, Any]:
        return self.call("DELETE", f"/rules/{rule_id}")

    def rule_status(self, rule_id: str) -> Dict[str, Any]:
        answer = self.ok("GET", f"/rules/{rule_id}/status")
        if not isinstance(answer, dict):
            raise RestError("GET", f"/rules/{rule_id}/status", 200, str(answer))
        return answer

    def rules(self) -> List[Dict[str, Any]]:
        return self.ok("GET", "/rules")

    def functions(self) -> Any:
        return self.ok("GET", "/plugins/udfs")


def last_exceptions(status: Mapping[str, Any]) -> Dict[str, str]:
    """``..._last_exception`` metrics that are set (both v1.14.7 and v2.4.0 name
    them ``op_<op>_<instance>_last_exception``, ``sink_..._last_exception``)."""
    return {k: str(v) for k, v in status.items() if k.endswith("_last_exception") and v}


def exceptions_total(status: Mapping[str, Any]) -> int:
    return sum(int(v) for k, v in status.items() if k.endswith("_exceptions_total") and isinstance(v, (int, float)))


# -- kuiperd --------------------------------------------------------------------------


def _set_yaml_scalar(text: str, section: str, key: str, value: str) -> str:
    """Set ``key: value`` inside the top-level ``section:`` of eKuiper's stock yaml
    (a line edit keeps its comments and needs no yaml library)."""
    lines = text.splitlines()
    in_section = False
    for i, line in enumerate(lines):
        if re.match(r"^\S", line):
            in_section = line.rstrip() == f"{section}:"
            continue
        m = re.match(rf"^(\s+){re.escape(key)}:\s*", line)
        if in_section and m:
            lines[i] = f"{m.group(1)}{key}: {value}"
            return "\n".join(lines) + "\n"
    raise KeyError(f"{section}.{key} not found")


class Kuiperd:
    """One kuiperd process in its own base folder."""

    # Every kuiperd the run made (hang_watch reads their plugins' self-heal logs).
    instances: List["Kuiperd"] = []

    def __init__(self, binary: Path, etc_src: Path, base: Path, broker_url: str,
                 python_bin: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 path_prefix: Optional[Path] = None, launcher: Optional[List[str]] = None) -> None:
        self.binary = binary
        # Run kuiperd through this command (e.g. one that gives it a private /tmp);
        # it must exec kuiperd in the end, so the pid stays kuiperd's.
        self.launcher = list(launcher or [])
        self.path_prefix = path_prefix
        self.base = base
        self.broker_url = broker_url
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = base / "kuiperd.out"
        self.rest = Rest(self.port)
        self._make_base(etc_src, python_bin)
        Kuiperd.instances.append(self)

    @property
    def plugin_dir(self) -> Path:
        return self.base / "plugins" / "portable" / PLUGIN

    def _make_base(self, etc_src: Path, python_bin: Optional[str]) -> None:
        # kuiperd panics at boot if a plugin kind's folder is missing.
        for sub in ("data", "log", "plugins/sources", "plugins/sinks", "plugins/functions",
                    "plugins/portable", "plugins/wasm"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree(etc_src, self.base / "etc", dirs_exist_ok=True)
        src = self.base / "etc" / "mqtt_source.yaml"
        src.write_text(_set_yaml_scalar(src.read_text(), "default", "server", f'"{self.broker_url}"'))
        conn = self.base / "etc" / "connections" / "connection.yaml"
        if conn.exists() and "server:" in conn.read_text():
            conn.write_text(re.sub(r"tcp://127\.0\.0\.1:1883", self.broker_url, conn.read_text()))
        if python_bin:
            self.set_python_bin(python_bin)

    def set_python_bin(self, python_bin: str) -> None:
        conf = self.base / "etc" / "kuiper.yaml"
        conf.write_text(_set_yaml_scalar(conf.read_text(), "portable", "pythonBin", python_bin))

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        # Not inherited from the test run: the suite decides the interpreter.
        env.pop("KUIPER__PORTABLE__PYTHONBIN", None)
        # tox puts its own venv first on PATH; a production kuiperd has no venv
        # there, and `python` on PATH must not be one that happens to hold numpy.
        venv = env.pop("VIRTUAL_ENV", None)
        if venv:
            env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                          if p and not p.startswith(venv))
        if self.path_prefix:
            env["PATH"] = os.pathsep.join([str(self.path_prefix), env.get("PATH", "")])
        env.update({
            "KuiperBaseKey": str(self.base),
            "KUIPER__BASIC__RESTPORT": str(self.port),
            "KUIPER__BASIC__RESTIP": "127.0.0.1",
            "KUIPER__BASIC__CONSOLELOG": "true",
            "KUIPER__BASIC__FILELOG": "false",
            # Other listeners of the stock config, moved off their fixed ports so a
            # busy port on a shared machine cannot stop the host from starting.
            "KUIPER__BASIC__IP": "127.0.0.1",
            "KUIPER__BASIC__PORT": str(free_port()),
            "KUIPER__BASIC__PPROF": "false",
            "KUIPER__BASIC__PROMETHEUS": "false",
            **RULE_PATROL_ENV,
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> "Kuiperd":
        if self.proc and self.proc.poll() is None:
            raise RuntimeError("kuiperd is already running")
        out = open(self.log_path, "ab")
        out.write(f"\n==== kuiperd start {time.strftime('%H:%M:%S')} ====\n".encode())
        out.flush()
        self.proc = subprocess.Popen([*self.launcher, str(self.binary)], cwd=self.base, env=self.env(), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        try:
            wait_for(lambda: self.proc.poll() is not None or self._ping(), timeout, "kuiperd REST /ping")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        if self.proc.poll() is not None:
            raise RuntimeError(f"kuiperd exited {self.proc.returncode} at start\n{self.log_tail()}")
        return self

    def _ping(self) -> bool:
        try:
            status, _ = self.rest.call("GET", "/ping", timeout=2)
            return status == 200
        except OSError:
            return False

    def plugin_pids(self) -> List[int]:
        return pids_with_cwd_under(self.plugin_dir) if self.plugin_dir.exists() else []

    def stop(self, grace: float = 20, kill_leftovers: bool = True, settle: float = 0) -> List[str]:
        """SIGTERM kuiperd (SIGKILL after ``grace``); returns the command lines of
        processes still running with their cwd in the base folder ``settle`` seconds
        later (the plugin's), killed unless ``kill_leftovers`` is False."""
        if self.proc:
            _stop_process(self.proc, grace)
            self.proc = None
        try:
            wait_for(lambda: not pids_with_cwd_under(self.base), settle, "plugin processes to exit")
        except TimeoutError:
            pass
        left = pids_with_cwd_under(self.base)
        described = [f"{pid}: {cmdline(pid)}" for pid in left]
        if left and kill_leftovers:
            log.warning("killing processes left in %s after kuiperd stopped: %s", self.base, described)
            kill_pids(left)
        return described

    def restart(self, settle: float = 5) -> List[str]:
        """Stop and start on the same base, leaving any process that outlived kuiperd
        alone (as a real restart would); returns those."""
        left = self.stop(kill_leftovers=False, settle=settle)
        self.start()
        return left

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 60) -> str:
        lines = self.log_text().splitlines()[-n:]
        return "---- kuiperd log (last %d lines) ----\n%s" % (len(lines), "\n".join(lines))


# -- MQTT -----------------------------------------------------------------------------


class MqttCollector:
    """One paho client: publishes frames and collects messages of the topics it
    subscribed to, each into its own queue."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self._queues: Dict[str, "queue.Queue[bytes]"] = {}
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pyai-test-{os.getpid()}-{time.monotonic_ns()}")
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        q = self._queues.get(msg.topic)
        if q is not None:
            q.put(msg.payload)

    def subscribe(self, topic: str, timeout: float = 10) -> None:
        """Subscribe and wait for the broker's SUBACK (a sink message sent before it
        would be lost)."""
        self._queues.setdefault(topic, queue.Queue())
        done = threading.Event()
        self._client.on_subscribe = lambda *args: done.set()
        rc, _ = self._client.subscribe(topic, qos=1)
        if rc != 0 or not done.wait(timeout):
            raise TimeoutError(f"no SUBACK for {topic} within {timeout:.0f} s (rc {rc})")

    def publish(self, topic: str, payload: bytes, timeout: float = 10) -> None:
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)

    def get(self, topic: str, timeout: float) -> Optional[bytes]:
        try:
            return self._queues[topic].get(timeout=timeout)
        except queue.Empty:
            return None

    def get_json(self, topic: str, timeout: float) -> Optional[Any]:
        raw = self.get(topic, timeout)
        return None if raw is None else json.loads(raw)

    def drain(self, topic: str, quiet: float = 0.5) -> List[bytes]:
        """Everything that arrives until ``quiet`` seconds pass without a message."""
        out = []
        while True:
            raw = self.get(topic, quiet)
            if raw is None:
                return out
            out.append(raw)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def make_venv(path: Path, timeout: float = 120) -> Path:
    """A fresh venv (not on PATH) for ``portable.pythonBin``; its pip is what
    install.sh must use."""
    subprocess.run(["python3", "-m", "venv", str(path)], check=True, timeout=timeout)
    return path / "bin" / "python"


def new_base(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
