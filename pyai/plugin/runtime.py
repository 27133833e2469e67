"""The eKuiper portable-plugin protocol, function symbols only, kept lean.

Speaks exactly what the Go host and the ``ekuiper`` SDK speak (SP REQ sockets
dialing the host's REP sockets over IPC, a ``handshake`` first, keep-alive
handshakes after 5 s idle), without the SDK's per-call costs: no nng threads
between the socket and the handler (``sp.py``), requests read into a reused
buffer, never a request formatted into a log string, and an ``Exec`` whose
first argument is a long base64 string (or a window's list of them) is split
without running the JSON parser over (or copying) the frames.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Protocol

from .sp import ChannelClosed, ReqSocket

log = logging.getLogger(__name__)

CONTROL_URL = "ipc:///tmp/plugin_{}.ipc"
FUNCTION_URL = "ipc:///tmp/func_{}.ipc"
IDLE_TIMEOUT_MS = 5000
HANDSHAKE = b"handshake"
_EXEC_PREFIX = b'{"func":"Exec","arg":["'
_EXEC_LIST_PREFIX = b'{"func":"Exec","arg":[["'


class FrameArg:
    """A first ``Exec`` argument left as undecoded JSON-string bytes (base64 text).

    Holds a memoryview into the request, so the frame is never copied before
    base64 decoding reads it.
    """

    __slots__ = ("view",)

    def __init__(self, view: memoryview):
        self.view = view

    def __len__(self) -> int:
        return len(self.view)


class Function(Protocol):
    def validate(self, args: List[Any]) -> str: ...

    def exec(self, args: List[Any]) -> Any: ...

    def is_aggregate(self) -> bool: ...


# Built once: json.dumps with arguments constructs a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode_reply(state: bool, result: Any) -> bytes:
    try:
        return _ENCODER.encode({"state": state, "result": result}).encode()
    except (TypeError, ValueError) as exc:
        return json.dumps({"state": False, "result": f"cannot encode result: {exc}"}).encode()


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text[:300] or type(exc).__name__


def parse_request(req: bytes | bytearray, n: Optional[int] = None) -> Dict[str, Any]:
    """Split a host request (its first ``n`` bytes); the first Exec argument stays a
    FrameArg when it is a plain string, or a list of FrameArgs when it is a list of
    plain strings (an aggregate's window)."""
    if n is None:
        n = len(req)
    if req.endswith(b"]}", 0, n):
        if req.startswith(_EXEC_PREFIX):
            split = _split_strings(req, n, len(_EXEC_PREFIX) - 1, one=True)
            if split is not None:
                frames, end = split
                return {"func": "Exec", "arg": [frames[0]] + json.loads(b"[null" + req[end:n - 1])[1:]}
        elif req.startswith(_EXEC_LIST_PREFIX):
            split = _split_strings(req, n, len(_EXEC_LIST_PREFIX) - 1, one=False)
            if split is not None and req[split[1]:split[1] + 1] == b"]":
                frames, end = split
                return {"func": "Exec", "arg": [frames] + json.loads(b"[null" + req[end + 1:n - 1])[1:]}
    msg = json.loads(req[:n] if n < len(req) else req)
    if not isinstance(msg, dict):
        raise ValueError("request is not a JSON object")
    return msg


def _split_strings(req: bytes | bytearray, n: int, quote: int, one: bool) -> Optional[tuple]:
    """JSON strings without escapes starting at ``req[quote] == '"'``, separated by commas,
    as FrameArgs; returns them and the index after the last one, or None for anything
    the real parser must handle (an escape, a non-string)."""
    view = memoryview(req)
    frames = []
    while True:
        end = req.find(b'"', quote + 1, n)
        # A backslash would mean JSON escapes inside the string: not base64.
        if end < 0 or req.find(b"\\", quote + 1, end) >= 0:
            return None
        frames.append(FrameArg(view[quote + 1:end]))
        end += 1
        if one or req[end:end + 2] != b',"':
            return frames, end
        quote = end + 1


def handle_function_request(fn: Function, req: bytes | bytearray, n: Optional[int] = None) -> bytes:
    """One host request (its first ``n`` bytes) -> one reply. Never raises: every
    failure is a state:false reply."""
    try:
        msg = parse_request(req, n)
        name = msg.get("func")
        arg = msg.get("arg")
        if name == "Exec":
            if not isinstance(arg, list) or len(arg) < 1:
                return encode_reply(False, "invalid arg: expected the argument list and the function meta")
            return encode_reply(True, fn.exec(arg[:-1]))
        if name == "Validate":
            err = fn.validate(arg if isinstance(arg, list) else [])
            return encode_reply(not err, err or "")
        if name == "IsAggregate":
            return encode_reply(True, fn.is_aggregate())
        return encode_reply(False, f"invalid func {name!r}")
    except Exception as exc:  # noqa: BLE001 - the process must keep serving
        log.debug("request failed", exc_info=True)
        return encode_reply(False, one_line(exc))


class Channel:
    """Our REQ end of one host REP socket: after the handshake, each recv is a host
    request and our next send is its reply."""

    def __init__(self, url: str, idle_timeout_ms: int = IDLE_TIMEOUT_MS, dial_attempts: int = 50):
        self.url = url
        self.idle_timeout_s = idle_timeout_ms / 1000.0
        self.dial_attempts = dial_attempts
        self.sock = ReqSocket(url)
        self.sock.dial(dial_attempts)
        self.closed = False

    def serve(self, handler: Callable[[bytearray, int], bytes]) -> None:
        """Answer requests until closed; ``handler`` gets a reused buffer and the length."""
        sock = self.sock
        try:
            sock.send(HANDSHAKE)
            while not self.closed:
                try:
                    try:
                        buf, n = sock.recv(self.idle_timeout_s)
                    except TimeoutError:
                        # An idle REQ socket must send before it may receive again;
                        # the host skips replies that start with "h".
                        sock.send(HANDSHAKE)
                        continue
                    sock.send(handler(buf, n))
                except ConnectionError as exc:
                    if self.closed:
                        break
                    # The host dropped the connection (restarting?): dial again,
                    # as nng's dialer would, and announce ourselves.
                    log.warning("channel %s: %s; dialing again", self.url, exc)
                    sock.dial(self.dial_attempts)
                    sock.send(HANDSHAKE)
        except ChannelClosed:
            pass
        except ConnectionError as exc:
            if not self.closed:
                log.error("channel %s failed: %s", self.url, exc)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class SymbolRunner:
    """One function symbol served on its own thread."""

    def __init__(self, name: str, fn: Function):
        self.name = name
        self.fn = fn
        self.channel = Channel(FUNCTION_URL.format(name))
        self.thread = threading.Thread(target=self._run, name=f"pyai-func-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fn = self.fn
        self.channel.serve(lambda buf, n: handle_function_request(fn, buf, n))

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.channel.close()
        self.thread.join(timeout=2)


class PluginRuntime:
    """The control channel: start/stop of function symbols."""

    def __init__(self, plugin_name: str, functions: Dict[str, Callable[[], Function]]):
        self.plugin_name = plugin_name
        self.factories = functions
        self.instances: Dict[str, Function] = {}
        self.runners: Dict[str, SymbolRunner] = {}
        self.control: Optional[Channel] = None

    def run(self) -> None:
        log.info("pyai: dialing control channel for plugin %s", self.plugin_name)
        self.control = Channel(CONTROL_URL.format(self.plugin_name))
        self.control.serve(lambda buf, n: self.handle_command(bytes(buf[:n])))

    def handle_command(self, req: bytes) -> bytes:
        # A reply starting with "h" would be skipped by the host as a stale
        # handshake, so every error text starts with "error".
        try:
            cmd = json.loads(req)
            ctrl = json.loads(cmd["arg"])
            symbol = ctrl["symbolName"]
            if ctrl.get("pluginType") != "func" or symbol not in self.factories:
                return f"error: symbol {symbol!r} of type {ctrl.get('pluginType')!r} not found".encode()
            if cmd["cmd"] == "start":
                self.start_symbol(symbol)
            elif cmd["cmd"] == "stop":
                self.stop_symbol(symbol)
            else:
                return f"error: invalid command {cmd['cmd']!r}".encode()
            return b"ok"
        except Exception as exc:  # noqa: BLE001 - the control loop must survive anything
            return f"error: {one_line(exc)}".encode()

    def start_symbol(self, symbol: str) -> None:
        runner = self.runners.get(symbol)
        if runner is not None and runner.running:
            # Functions are shared by all rules: a second start is a no-op.
            return
        fn = self.instances.get(symbol)
        if fn is None:
            fn = self.instances[symbol] = self.factories[symbol]()
        log.info("pyai: starting function %s", symbol)
        self.runners[symbol] = SymbolRunner(symbol, fn)

    def stop_symbol(self, symbol: str) -> None:
        runner = self.runners.pop(symbol, None)
        if runner is not None:
            log.info("pyai: stopping function %s", symbol)
            runner.stop()
