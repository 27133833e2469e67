"""The plugin's end of an eKuiper channel: an SP REQ socket over IPC, run in the caller's thread.

eKuiper's host listens on ``ipc:///tmp/...`` with REP sockets (mangos, which
speaks the nanomsg/nng "SP" wire protocol). pynng can dial them too, but every
message then crosses nng's I/O and task threads (two or three thread wake-ups
each way per call) and is copied into a fresh ``bytes``. Here the thread that
serves the channel blocks on the Unix socket itself, and each request is read
into a buffer reused from call to call.

The wire format (nng's ``ipc`` transport, REQ0/REP0 protocols):

- on connect each side sends 8 bytes: ``00 'S' 'P' 00``, its protocol id as a
  big-endian u16 (REQ0 0x30, REP0 0x31), ``00 00``;
- every message is ``01``, the body length as a big-endian u64, the body;
- a REQ body starts with a 4-byte request id whose top bit is set, and the REP's
  reply carries the same id back. A reply to any other id is stale (it answers a
  request this socket has since replaced) and is dropped, as nng does.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from typing import Optional, Tuple

PROTO_REQ0 = 0x30
PROTO_REP0 = 0x31
_HEADER = b"\x00SP\x00" + struct.pack(">H", PROTO_REQ0) + b"\x00\x00"
_MSG = struct.Struct(">BQI")  # message type, body length, request id
MAX_MESSAGE_BYTES = 1 << 31  # a length beyond this is a corrupt stream, not a frame


class ChannelClosed(Exception):
    """The socket was closed by :meth:`ReqSocket.close`."""


class ReqSocket:
    """A REQ socket dialed to one IPC address; one thread uses it at a time.

    ``recv`` may be interrupted from another thread by ``close``.
    """

    def __init__(self, url: str):
        if not url.startswith("ipc://"):
            raise ValueError(f"only ipc:// addresses are supported, got {url!r}")
        self.path = url[len("ipc://"):]
        self._sock: Optional[socket.socket] = None
        self._closed = False
        self._id = random.getrandbits(31)
        self._buf = bytearray(1 << 16)
        self._head = bytearray(_MSG.size)

    # -- connection ---------------------------------------------------------------------

    def dial(self, attempts: int = 50, interval_s: float = 0.1) -> None:
        """Connect and exchange SP headers, retrying while the host is not listening yet."""
        self._drop()  # a broken connection, when dialing again
        last: Exception = ConnectionError("no attempt")
        for attempt in range(attempts):
            if self._closed:
                raise ChannelClosed(self.path)
            try:
                self._connect()
                return
            except (OSError, ConnectionError) as exc:
                last = exc
                self._drop()
                if attempt < attempts - 1:
                    time.sleep(interval_s)
        raise ConnectionError(f"cannot dial ipc://{self.path}: {last}")

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        sock.settimeout(5.0)
        sock.connect(self.path)
        sock.sendall(_HEADER)
        peer = bytearray(8)
        _read_into(sock, memoryview(peer))
        if peer[:4] != b"\x00SP\x00" or peer[6:] != b"\x00\x00":
            raise ConnectionError(f"not an SP peer at {self.path}: header {bytes(peer)!r}")
        proto = struct.unpack(">H", peer[4:6])[0]
        if proto != PROTO_REP0:
            raise ConnectionError(f"peer at {self.path} speaks protocol {proto:#x}, not REP0")

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        """Close; a ``recv`` blocked in another thread raises ChannelClosed."""
        self._closed = True
        sock = self._sock
        if sock is not None:
            try:
                # Wakes a thread blocked on the socket; close() alone would not.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._drop()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- messages -------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Send a new request (replacing any unanswered one)."""
        sock = self._live()
        self._id = (self._id + 1) & 0x7FFFFFFF
        head = _MSG.pack(1, len(payload) + 4, self._id | 0x80000000)
        try:
            if len(payload) < 65536:
                sock.sendall(head + payload)
            else:
                sock.sendall(head)
                sock.sendall(payload)
        except OSError as exc:
            raise self._failure(exc) from None

    def recv(self, timeout_s: Optional[float]) -> Tuple[bytearray, int]:
        """The reply to the last request: (buffer, length).

        The buffer is reused by the next ``recv``: read it, or copy it, first.
        Raises TimeoutError when nothing arrives within ``timeout_s`` (the
        request stays pending), ConnectionError when the host hung up, and
        ChannelClosed after :meth:`close`.
        """
        sock = self._live()
        while True:
            head = memoryview(self._head)
            sock.settimeout(timeout_s)
            try:
                got = sock.recv_into(head)
            except socket.timeout:
                raise TimeoutError(self.path) from None
            except OSError as exc:
                raise self._failure(exc) from None
            if got == 0:
                raise self._failure(ConnectionError("host closed the channel"))
            # A message has started: the rest follows at once, or the stream is broken.
            sock.settimeout(5.0)
            try:
                # Every REQ0 reply has at least its 4-byte id: read type, length and id.
                _read_into(sock, head[got:])
                kind, size, rid = _MSG.unpack_from(self._head)
                if kind != 1 or not 4 <= size <= MAX_MESSAGE_BYTES:
                    raise ConnectionError(f"corrupt SP message header (type {kind}, length {size})")
                n = size - 4
                if n > len(self._buf):
                    # A new buffer, never a resize: views of the old one may live on.
                    self._buf = bytearray(max(n, 2 * len(self._buf)))
                _read_into(sock, memoryview(self._buf)[:n])
            except socket.timeout:
                raise self._failure(ConnectionError("host stopped mid-message")) from None
            except OSError as exc:
                raise self._failure(exc) from None
            if rid == self._id | 0x80000000:
                return self._buf, n
            # A stale reply to a request we have since replaced: drop it, like nng.

    def _live(self) -> socket.socket:
        sock = self._sock
        if sock is None or self._closed:
            raise ChannelClosed(self.path)
        return sock

    def _failure(self, exc: BaseException) -> Exception:
        if self._closed:
            return ChannelClosed(self.path)
        return exc if isinstance(exc, ConnectionError) else ConnectionError(f"{self.path}: {exc}")


def _read_into(sock: socket.socket, view: memoryview) -> None:
    while view:
        got = sock.recv_into(view)
        if got == 0:
            raise ConnectionError("host closed the channel")
        view = view[got:]
