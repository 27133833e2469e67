"""A stand-in for the eKuiper Go host, for tests and benches (not part of the plugin).

It does what eKuiper v2.4.0's ``internal/plugin/portable/runtime`` does, as far
as a function plugin can tell: listens (REP) on ``ipc:///tmp/plugin_<name>.ipc``
for the life of the host, starts ``<python> -u <executable>
'{"sendTimeout":1000}'`` in the plugin folder, waits for the handshake, listens
(REP) on ``ipc:///tmp/func_<symbol>.ipc`` on a symbol's first use (and never
closes it), sends ``start``, encodes requests as Go's encoding/json does
(``[]byte`` as standard base64), re-sends a request when the reply is a
handshake (``h...``), and waits 5 s for a reply.

Like the real host it does NOT restart a dead plugin process and does not
replay start commands: a call to a plugin whose process died is answered by
whatever process dials the function's channel (pyai's own replacement, see
``pyai/plugin/guardian.py``), or times out. It starts a process again only when
told to (``start()``), as eKuiper does for a function used for the first time.
The real host (``tests/ekuiper``) is the judge; this one is quicker to drive.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pynng

CONTROL_URL = "ipc:///tmp/plugin_{}.ipc"
FUNCTION_URL = "ipc:///tmp/func_{}.ipc"
HOST_CONFIG = '{"sendTimeout":1000}'
LOCK_PATH = "/tmp/pyai-{uid}/plugin_{name}.lock"  # pyai.plugin.instance.lock_path


class HostError(RuntimeError):
    """What the Go host would record as the rule's error."""


class HostTimeout(HostError):
    pass


def go_json(value: Any) -> bytes:
    """JSON as Go's json.Marshal writes it: compact, HTML characters escaped, bytes as base64."""

    def default(o: Any) -> Any:
        if isinstance(o, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(o)).decode("ascii")
        raise TypeError(f"cannot encode {type(o).__name__}")

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


class _ReqRep:
    """The host's REP end of one channel, with the Go host's request/skip-handshake loop."""

    def __init__(self, url: str, timeout_ms: int):
        self.url = url
        self.sock = pynng.Rep0(recv_timeout=timeout_ms, send_timeout=timeout_ms)
        self.sock.recv_max_size = 0
        self.sock.listen(url)
        self.lock = threading.Lock()

    def wait_handshake(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                msg = self.sock.recv()
            except pynng.Timeout:
                if time.monotonic() > deadline:
                    raise HostTimeout(f"no handshake on {self.url} within {timeout_s:.0f} s") from None
                continue
            if msg.startswith(b"h"):
                return

    def request(self, payload: bytes) -> bytes:
        with self.lock:
            while True:
                try:
                    try:
                        self.sock.send(payload)
                    except pynng.BadState:
                        # As eKuiper's Req/SendCmd on ErrProtoState: the previous call
                        # timed out, so the socket still owes a receive. Take (and drop)
                        # the plugin's late reply or keep-alive, then send again.
                        self.sock.recv()
                        self.sock.send(payload)
                    reply = self.sock.recv()
                except pynng.Timeout:
                    raise HostTimeout(f"time out on {self.url}") from None
                except pynng.NNGException as exc:
                    raise HostError(f"{self.url}: {exc}") from None
                if reply.startswith(b"h"):
                    # The plugin re-sent a keep-alive handshake: our request went to
                    # a cancelled one, so send it again.
                    continue
                return reply

    def close(self) -> None:
        self.sock.close()


@dataclass
class Reply:
    state: bool
    result: Any
    seconds: float
    raw: bytes = field(repr=False, default=b"")


class PluginHost:
    """Runs one plugin process the way eKuiper does.

    ``python`` is the interpreter command (a list, so an emulator prefix fits).
    """

    def __init__(
        self,
        plugin_dir: str | os.PathLike[str],
        python: Sequence[str] = (sys.executable,),
        name: str = "pyai",
        env: Optional[Dict[str, str]] = None,
        recv_timeout_s: float = 5.0,
        init_timeout_s: float = 60.0,
        log_path: Optional[str | os.PathLike[str]] = None,
    ):
        self.plugin_dir = Path(plugin_dir)
        self.python = list(python)
        self.name = name
        self.env = dict(os.environ if env is None else env)
        self.recv_timeout_ms = int(recv_timeout_s * 1000)
        self.init_timeout_s = init_timeout_s
        self.log_path = Path(log_path) if log_path else self.plugin_dir / "plugin.log"
        manifest = json.loads((self.plugin_dir / f"{name}.json").read_text())
        self.executable = manifest["executable"]
        self.proc: Optional[subprocess.Popen] = None
        self.control: Optional[_ReqRep] = None
        self.functions: Dict[str, _ReqRep] = {}
        self.started_symbols: List[str] = []
        self._log = None
        # eKuiper creates a symbol (channel + start command) under a lock.
        self._lifecycle = threading.RLock()

    # -- process -------------------------------------------------------------------

    def start(self) -> float:
        """Start a plugin process and wait for its handshake; returns the seconds it took.

        The control channel is created once and kept, as eKuiper keeps it."""
        if self.control is None:
            self.control = _ReqRep(CONTROL_URL.format(self.name), self.recv_timeout_ms)
        t0 = time.perf_counter()
        if self._log is None:
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.python + ["-u", self.executable, HOST_CONFIG],
            cwd=self.plugin_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        self.control.wait_handshake(self.init_timeout_s)
        return time.perf_counter() - t0

    def alive(self) -> bool:
        """Whether the process this host started is running."""
        return self.proc is not None and self.proc.poll() is None

    def serving_pid(self) -> Optional[int]:
        """The plugin process that holds the plugin's instance lock, i.e. serves the
        channels: the process started here, or the one that replaced it."""
        return lock_holder(self.name)

    def wait_serving(self, timeout_s: float = 10.0, not_pid: Optional[int] = None) -> int:
        """The serving pid, once there is one (other than ``not_pid``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pid = self.serving_pid()
            if pid is not None and pid != not_pid:
                return pid
            if time.monotonic() > deadline:
                raise HostError(f"no plugin process serves within {timeout_s:.0f} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9 of the process this host started (eKuiper's ``process.Kill()``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill_serving(self, timeout_s: float = 10.0) -> int:
        """kill -9 of whichever plugin process serves now; returns its pid."""
        pid = self.wait_serving(timeout_s)
        if self.proc is not None and self.proc.pid == pid:
            self.kill()
        else:
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, timeout_s)
        return pid

    def close(self) -> None:
        """Stop as kuiperd does when it exits (kill the process it started, close every
        channel); then, as a test's clean-up, end whatever is left in the plugin folder
        (a replacement process, guardians)."""
        self.kill()
        for ch in self.functions.values():
            ch.close()
        self.functions.clear()
        self.started_symbols.clear()
        if self.control is not None:
            self.control.close()
            self.control = None
        kill_processes_in(self.plugin_dir)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "PluginHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self) -> str:
        out = []
        for path in (self.log_path, self.plugin_dir / "self_heal.log"):
            try:
                out.append(path.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    # -- control channel ---------------------------------------------------------------

    def command(self, cmd: str, symbol: str, rule: str = "rule1") -> str:
        # eKuiper sends functions empty meta; a rule id here only labels the test.
        arg = {"symbolName": symbol, "meta": {"ruleId": rule, "opId": "op1", "instanceId": 0}, "pluginType": "func"}
        assert self.control is not None
        reply = self.control.request(go_json({"cmd": cmd, "arg": go_json(arg).decode()}))
        return reply.decode(errors="replace")

    def start_symbol(self, symbol: str) -> None:
        """A symbol's first use: listen on its channel (kept for good), send ``start``."""
        with self._lifecycle:
            if self.proc is None:
                self.start()
            ch = self.functions.get(symbol)
            if ch is None:
                ch = self.functions[symbol] = _ReqRep(FUNCTION_URL.format(symbol), self.recv_timeout_ms)
            reply = self.command("start", symbol)
            if reply != "ok":
                raise HostError(f"start {symbol}: {reply}")
            if symbol not in self.started_symbols:
                self.started_symbols.append(symbol)

    def stop_symbol(self, symbol: str) -> str:
        """``stop`` (eKuiper sends it for sources and sinks, never for functions). The
        channel stays, as eKuiper's function channels do."""
        with self._lifecycle:
            reply = self.command("stop", symbol)
            if symbol in self.started_symbols:
                self.started_symbols.remove(symbol)
            return reply

    # -- function channel ----------------------------------------------------------------

    def call(self, symbol: str, func: str, arg: Any) -> Reply:
        with self._lifecycle:
            if symbol not in self.started_symbols:
                self.start_symbol(symbol)
            channel = self.functions[symbol]
        payload = go_json({"func": func, "arg": arg})
        t0 = time.perf_counter()
        raw = channel.request(payload)
        dt = time.perf_counter() - t0
        try:
            msg = json.loads(raw)
        except ValueError:
            raise HostError(f"cannot parse reply {raw[:200]!r}") from None
        return Reply(bool(msg.get("state")), msg.get("result"), dt, raw)

    def exec(self, symbol: str, *args: Any, rule: str = "rule1") -> Reply:
        meta = go_json({"ruleId": rule, "opId": "op1", "instanceId": 0, "funcId": 0}).decode()
        return self.call(symbol, "Exec", list(args) + [meta])

    def validate(self, symbol: str, args: List[Any]) -> Reply:
        return self.call(symbol, "Validate", args)

    def is_aggregate(self, symbol: str) -> Reply:
        return self.call(symbol, "IsAggregate", None)


# -- processes -------------------------------------------------------------------------------


def lock_holder(name: str = "pyai") -> Optional[int]:
    """The pid written in the plugin's instance lock file, if that process runs."""
    try:
        text = Path(LOCK_PATH.format(uid=os.getuid(), name=name)).read_text().split()
    except OSError:
        return None
    pid = int(text[0]) if text and text[0].isdigit() else None
    return pid if pid and running(pid) else None


def running(pid: int) -> bool:
    from pyai.plugin.guardian import process_running

    return process_running(pid)


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def processes_in(folder: str | os.PathLike[str]) -> List[int]:
    """Pids of the running processes whose working directory is ``folder`` (the
    plugin's, its replacements' and its guardians')."""
    want = os.path.realpath(folder)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.path.realpath(os.readlink(f"/proc/{entry}/cwd")) == want and running(int(entry)):
                out.append(int(entry))
        except OSError:
            continue
    return out


def kill_processes_in(folder: str | os.PathLike[str]) -> None:
    for pid in processes_in(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in processes_in(folder):
        wait_gone(pid, 5)


# -- installing a plugin zip as eKuiper does ------------------------------------------------


def unpack_plugin(zip_path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Unpack as eKuiper does: ``functions/`` to its config folder, the rest to the plugin folder."""
    dest = Path(dest)
    plugin_dir = dest / "plugins" / "portable" / "pyai"
    etc_dir = dest / "etc"
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = (etc_dir if info.filename.startswith("functions/") else plugin_dir) / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = info.external_attr >> 16
            if mode:
                os.chmod(target, mode & 0o777)
    return plugin_dir


def make_venv(path: str | os.PathLike[str]) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return Path(path) / "bin"


def run_install_sh(plugin_dir: Path, bin_dir: Path, env: Optional[Dict[str, str]] = None, timeout: float = 900) -> str:
    """``/bin/sh install.sh --python <bin_dir>/python`` in the plugin folder, as eKuiper
    runs it for an install request with ``"shellParas": ["--python", ...]``."""
    run_env = dict(os.environ if env is None else env)
    run_env.pop("PYTHONPATH", None)
    res = subprocess.run(
        ["/bin/sh", "install.sh", "--python", str(bin_dir / "python")],
        cwd=plugin_dir, env=run_env, capture_output=True, text=True, timeout=timeout,
    )
    out = res.stdout + res.stderr
    if res.returncode != 0:
        raise HostError(f"install.sh failed ({res.returncode}):\n{out}")
    return out


def install_zip(zip_path: str | os.PathLike[str], workdir: Optional[str] = None) -> tuple[Path, Path, str]:
    """Unpack, make a fresh venv, run install.sh with it; returns (plugin_dir, python, install log)."""
    work = Path(workdir or tempfile.mkdtemp(prefix="pyai-host-"))
    plugin_dir = unpack_plugin(zip_path, work)
    bin_dir = make_venv(work / "venv")
    out = run_install_sh(plugin_dir, bin_dir)
    return plugin_dir, bin_dir / "python", out
