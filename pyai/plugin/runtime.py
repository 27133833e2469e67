"""The eKuiper portable-plugin protocol, function symbols only, kept lean.

Speaks what the Go host expects (SP REQ sockets dialing the host's REP sockets
over IPC, a ``handshake`` first), without the SDK's per-call costs: no nng
threads between the socket and the handler (``sp.py``), requests read into a
reused buffer, never a request formatted into a log string, and an ``Exec``
whose first argument is a long base64 string (or a window's list of them) is
split without running the JSON parser over (or copying) the frames.

Two things differ from the ``ekuiper`` SDK on purpose:

- No keep-alive. The SDK re-sends a handshake after 5 s idle, but the host
  reads a channel only during a call, so every keep-alive queues up there: after
  an idle period the next call meets each of them and re-sends its request once
  per keep-alive (a whole window of frames each time), and eKuiper 1.x's
  control channel takes a queued keep-alive for a failed command. A REQ that
  never gives up on its request needs no keep-alive: the host answers it with
  its next request, however late.
- No dialing again. The host's channels live as long as kuiperd, so a channel
  that breaks means kuiperd stopped; a new kuiperd starts a process of its own.
  The runtime then ends (``Ended``), and the process exits.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from array import array
from typing import Any, Callable, Dict, List, Optional, Protocol

from .callboard import CallBoard, CallSlot
from .sp import ChannelClosed, ReqSocket

log = logging.getLogger(__name__)

CONTROL_URL = "ipc:///tmp/plugin_{}.ipc"
FUNCTION_URL = "ipc:///tmp/func_{}.ipc"
HANDSHAKE = b"handshake"
# Dialing retries while the host is not listening yet: the host listens before it
# starts the process or sends ``start``, so this only covers a slow scheduler.
DIAL_ATTEMPTS = 50
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
    """A function symbol. One whose class sets ``takes_meta = True`` gets the Exec
    request's last argument, the function meta eKuiper sends (a JSON string of
    ruleId, opId, instanceId, funcId), as a second argument of ``exec``."""

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
            if getattr(fn, "takes_meta", False):
                # The function meta (rule, operator, instance): the call site of the gate.
                return encode_reply(True, fn.exec(arg[:-1], arg[-1]))
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

    def __init__(self, url: str, dial_attempts: int = DIAL_ATTEMPTS):
        self.url = url
        self.sock = ReqSocket(url)
        self.sock.dial(dial_attempts)
        self.closed = False
        self.broken: Optional[str] = None

    def handshake(self) -> None:
        self.sock.send(HANDSHAKE)

    def serve(self, handler: Callable[[bytearray, int], bytes], handshake: bool = True) -> None:
        """Answer requests until closed or the host hangs up (then ``broken`` says why);
        ``handler`` gets a reused buffer and the length."""
        sock = self.sock
        try:
            if handshake:
                sock.send(HANDSHAKE)
            while not self.closed:
                buf, n = sock.recv(None)
                sock.send(handler(buf, n))
        except ChannelClosed:
            pass
        except ConnectionError as exc:
            if not self.closed:
                self.broken = str(exc)
                log.warning("channel %s: %s", self.url, exc)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def listening(url: str) -> bool:
    """Whether a host listens on ``url`` now (a connect, closed at once; the host's
    socket drops such a peer)."""
    path = url[len("ipc://"):]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


_OK_REPLY = b'{"state":true'


class CallCounts:
    """Requests one symbol answered in this process: with ``state:true`` and with an
    error, and how the time went. Written by the symbol's thread only; read (as a
    snapshot) by ``pyaiStats``, so a fault's lost frames can be told apart from calls
    this process failed, and a slow stream's time split between pyai and its host.

    ``call_ms``: from a request's arrival to its reply, pyai's own time. ``between_ms``:
    from a reply to the next request. eKuiper sends one request at a time per symbol,
    so while frames wait in the host this is the host's own time per call (its
    transport, its JSON, its rule), the part of each frame pyai cannot shorten; on a
    stream slower than pyai it is the idle time between frames.
    """

    __slots__ = ("answered", "errors", "_call", "_between", "_last_end", "_lock", "_totals")

    #: the most recent calls the percentiles describe
    WINDOW = 1024

    def __init__(self) -> None:
        self.answered = 0
        self.errors = 0
        self._call = _Ring(self.WINDOW)
        self._between = _Ring(self.WINDOW)
        self._last_end: Optional[float] = None
        self._lock = threading.Lock()
        # Since the process started: calls, their seconds, gaps, their seconds. Two
        # snapshots give the means between them exactly (the percentiles' window of
        # the last calls may reach back before a load started).
        self._totals = [0, 0.0, 0, 0.0]

    def count(self, reply: bytes) -> bytes:
        if reply.startswith(_OK_REPLY):
            self.answered += 1
        else:
            self.errors += 1
        return reply

    def timed(self, handler: Callable[[bytearray, int], bytes]) -> Callable[[bytearray, int], bytes]:
        """``handler``, counted and timed."""
        clock, lock, count = time.perf_counter, self._lock, self.count

        def run(buf: bytearray, n: int) -> bytes:
            start = clock()
            try:
                return count(handler(buf, n))
            finally:
                end = clock()
                totals = self._totals
                with lock:
                    if self._last_end is not None:
                        self._between.append(start - self._last_end)
                        totals[2] += 1
                        totals[3] += start - self._last_end
                    self._call.append(end - start)
                    totals[0] += 1
                    totals[1] += end - start
                self._last_end = end

        return run

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            call, between = self._call.values(), self._between.values()
            calls, call_s, gaps, between_s = self._totals
        return {"answered": self.answered, "errors": self.errors,
                "call_ms": _percentiles(call), "between_ms": _percentiles(between),
                "totals": {"calls": calls, "call_s": round(call_s, 6), "gaps": gaps, "between_s": round(between_s, 6)}}


class _Ring:
    """The last ``size`` floats, in preallocated C doubles: a call's timing allocates
    nothing (a deque of floats would hold a new object per call until it is full).
    Not ``pyai.stats.Reservoir``: the guardian imports this module and stays free of
    NumPy (importing it loads none), which ``pyai.stats`` would bring in."""

    __slots__ = ("_buf", "_n")

    def __init__(self, size: int):
        self._buf = array("d", bytes(8 * size))
        self._n = 0

    def append(self, value: float) -> None:
        self._buf[self._n % len(self._buf)] = value
        self._n += 1

    def values(self) -> List[float]:
        return self._buf[:min(self._n, len(self._buf))].tolist()


def _percentiles(samples: List[float]) -> Dict[str, float]:
    """n, and mean, p50, p90, p99 in ms, of ``samples`` (seconds); {} when there are none."""
    xs = sorted(samples)
    if not xs:
        return {}
    at = lambda q: round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0, 3)  # noqa: E731
    return {"n": len(xs), "mean": round(sum(xs) / len(xs) * 1000.0, 3), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99)}


class SymbolRunner:
    """One function symbol served on its own thread; with a ``slot``, each call in
    flight is marked on the guardian's call board (``callboard.py``), and a function
    with a ``heartbeat`` attribute gets the slot's, to mark progress inside a long call."""

    def __init__(self, name: str, fn: Function, on_broken: Callable[[str], None], dial_attempts: int = DIAL_ATTEMPTS,
                 slot: Optional[CallSlot] = None):
        self.name = name
        self.fn = fn
        self.on_broken = on_broken
        self.slot = slot
        self.calls = CallCounts()
        self.channel = Channel(FUNCTION_URL.format(name), dial_attempts)
        self.thread = threading.Thread(target=self._run, name=f"pyai-func-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fn, slot = self.fn, self.slot
        if slot is None:
            self.channel.serve(self.calls.timed(lambda buf, n: handle_function_request(fn, buf, n)))
        else:
            if hasattr(fn, "heartbeat"):
                fn.heartbeat = slot.beat  # type: ignore[attr-defined]

            def marked(buf: bytearray, n: int) -> bytes:
                slot.begin()
                try:
                    return handle_function_request(fn, buf, n)
                finally:
                    slot.end()

            self.channel.serve(self.calls.timed(marked))
        if self.channel.broken:
            self.on_broken(f"function channel {self.name}: {self.channel.broken}")

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.channel.close()
        self.thread.join(timeout=2)


class PluginRuntime:
    """The control channel (start/stop of function symbols) and the symbols' channels.

    ``connect()`` dials the control channel and sends the handshake at once, before
    anything slow; ``serve()`` answers commands until ``shutdown()`` or until the
    host hangs up, and then says why in ``ended``.
    """

    def __init__(self, plugin_name: str, functions: Dict[str, Callable[[], Function]]):
        self.plugin_name = plugin_name
        self.factories = functions
        self.instances: Dict[str, Function] = {}
        self.runners: Dict[str, SymbolRunner] = {}
        self.control: Optional[Channel] = None
        self.ended: Optional[str] = None
        # Set by the plugin process when its guardian watches for hangs.
        self.board: Optional[CallBoard] = None
        self._lock = threading.RLock()

    def run(self) -> None:
        self.connect()
        self.serve()

    def connect(self) -> None:
        log.info("pyai: dialing control channel for plugin %s", self.plugin_name)
        self.control = Channel(CONTROL_URL.format(self.plugin_name))
        self.control.handshake()

    def serve(self) -> None:
        assert self.control is not None, "connect() first"
        self.control.serve(lambda buf, n: self.handle_command(bytes(buf[:n])), handshake=False)
        if self.control.broken:
            self.shutdown(f"control channel: {self.control.broken}")

    def attach_listening(self) -> List[str]:
        """Serve every symbol of ours that the host already listens for.

        The host creates a function's channel once, on its first use, and keeps it for
        the life of kuiperd, but sends ``start`` only then (and, when it starts a new
        process after an update, for one symbol only). A process that replaces one that
        died, or that follows an update, finds the others' channels this way.
        """
        attached = []
        for symbol in self.factories:
            if symbol in self.runners or not listening(FUNCTION_URL.format(symbol)):
                continue
            try:
                self.start_symbol(symbol, dial_attempts=1)
            except ConnectionError as exc:
                log.info("pyai: %s listens but cannot be dialed: %s", symbol, exc)
                continue
            attached.append(symbol)
        if attached:
            log.info("pyai: serving the host's existing channels for %s", ", ".join(attached))
        return attached

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

    def start_symbol(self, symbol: str, dial_attempts: int = DIAL_ATTEMPTS) -> None:
        with self._lock:
            runner = self.runners.get(symbol)
            if runner is not None and runner.running:
                # Functions are shared by all rules: a second start is a no-op.
                return
            fn = self.instances.get(symbol)
            if fn is None:
                fn = self.instances[symbol] = self.factories[symbol]()
            log.info("pyai: starting function %s", symbol)
            slot = self.board.slot(symbol) if self.board is not None else None
            self.runners[symbol] = SymbolRunner(symbol, fn, self.shutdown, dial_attempts, slot)

    def call_counts(self) -> Dict[str, Dict[str, Any]]:
        """{symbol: CallCounts.snapshot()} of the requests this process served."""
        with self._lock:
            runners = dict(self.runners)
        return {name: runner.calls.snapshot() for name, runner in runners.items()}

    def stop_symbol(self, symbol: str) -> None:
        with self._lock:
            runner = self.runners.pop(symbol, None)
        if runner is not None:
            log.info("pyai: stopping function %s", symbol)
            runner.stop()

    def shutdown(self, reason: str) -> None:
        """End serving: every channel closed, ``serve()`` returns. The first reason stays."""
        with self._lock:
            if self.ended is None:
                self.ended = reason
                log.info("pyai: shutting down: %s", reason)
            runners = list(self.runners.values())
        if self.control is not None:
            self.control.close()
        for runner in runners:
            runner.channel.close()
