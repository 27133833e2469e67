"""pyai's own SP REQ socket (pyai/plugin/sp.py) against nng's REP, the host's side."""

from __future__ import annotations

import os
import socket
import threading
import time

import pynng
import pytest

from pyai.plugin.runtime import Channel
from pyai.plugin.sp import ChannelClosed, ReqSocket

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url(tmp_path):
    return f"ipc://{tmp_path}/sp.ipc"


@pytest.fixture
def rep(url):
    sock = pynng.Rep0(recv_timeout=5000, send_timeout=5000)
    sock.recv_max_size = 0
    sock.listen(url)
    yield sock
    sock.close()


def _recv(req: ReqSocket, timeout: float = 5.0) -> bytes:
    buf, n = req.recv(timeout)
    return bytes(buf[:n])


def test_requests_and_replies_round_trip(url, rep):
    req = ReqSocket(url)
    req.dial()
    req.send(b"handshake")
    assert rep.recv() == b"handshake"
    big = bytes(range(256)) * 8192  # 2 MiB: many socket reads, a bigger buffer
    for payload in (b"hello", big, b"", b"x" * 70000, b"small again"):
        rep.send(payload)
        assert _recv(req) == payload
        back = payload[::-1] or b"-"  # pynng's recv cannot return an empty message
        req.send(back)
        assert rep.recv() == back
    req.close()


def test_a_stale_reply_is_dropped(url, rep):
    req = ReqSocket(url)
    req.dial()
    req.send(b"first")
    assert rep.recv() == b"first"
    with pytest.raises(TimeoutError):
        req.recv(0.05)
    # Unanswered for too long: the plugin sends a new request (a keep-alive)...
    req.send(b"second")
    # ...and the host's late answer to the first one must not be taken for the second's.
    rep.send(b"late answer to first")
    assert rep.recv() == b"second"
    rep.send(b"answer to second")
    assert _recv(req) == b"answer to second"
    req.close()


def test_dial_refuses_what_is_not_a_rep_socket(tmp_path):
    path = tmp_path / "not_sp.ipc"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def answer_garbage():
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(8)  # the dialer's SP header, so our answer cannot race it
            conn.sendall(b"HTTP/1.1")
            conn.recv(1)  # until the dialer hangs up
            conn.close()

    t = threading.Thread(target=answer_garbage, daemon=True)
    t.start()
    with pytest.raises(ConnectionError, match="not an SP peer"):
        ReqSocket(f"ipc://{path}").dial(attempts=2, interval_s=0.01)
    server.close()

    pub = pynng.Pub0(listen=f"ipc://{tmp_path}/pub.ipc")
    with pytest.raises(ConnectionError, match="not REP0"):
        ReqSocket(f"ipc://{tmp_path}/pub.ipc").dial(attempts=1)
    pub.close()

    with pytest.raises(ConnectionError, match="cannot dial"):
        ReqSocket(f"ipc://{tmp_path}/nobody.ipc").dial(attempts=2, interval_s=0.01)
    with pytest.raises(ValueError):
        ReqSocket("tcp://127.0.0.1:1")


def test_close_wakes_a_blocked_recv(url, rep):
    req = ReqSocket(url)
    req.dial()
    req.send(b"handshake")
    got = []

    def wait():
        try:
            req.recv(None)
        except ChannelClosed as exc:
            got.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.1)
    req.close()
    t.join(5)
    assert not t.is_alive() and got
    with pytest.raises(ChannelClosed):
        req.send(b"after close")


def _open_sockets() -> set:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


def test_channel_ends_when_the_host_goes_away(url):
    """eKuiper's channels live as long as kuiperd: a broken one means kuiperd stopped,
    and a new kuiperd starts a plugin process of its own. The channel must end (and say
    why) instead of dialing the next host, and leave no socket open once closed."""
    for _ in range(3):
        host = pynng.Rep0(recv_timeout=5000, send_timeout=5000, listen=url)
        ch = Channel(url)
        ours = f"socket:[{os.fstat(ch.sock._sock.fileno()).st_ino}]"
        t = threading.Thread(target=ch.serve, args=(lambda buf, n: b"echo:" + bytes(buf[:n]),), daemon=True)
        t.start()
        assert host.recv() == b"handshake"
        host.send(b"one")
        assert host.recv() == b"echo:one"
        host.close()  # the host goes away with our reply's answer pending
        t.join(5)
        assert not t.is_alive()
        assert ch.broken and not ch.closed
        ch.close()
        assert ours not in _open_sockets()


def test_idle_channel_sends_nothing(url, rep):
    """No keep-alive: the host reads only during a call, so anything sent while idle
    would queue up there and make its next call re-send the request."""
    rep.recv_timeout = 1500
    ch = Channel(url)
    t = threading.Thread(target=ch.serve, args=(lambda buf, n: b"r:" + bytes(buf[:n]),), daemon=True)
    t.start()
    assert rep.recv() == b"handshake"
    rep.send(b"call")
    assert rep.recv() == b"r:call"
    with pytest.raises(pynng.Timeout):
        rep.recv()  # 1.5 s idle: nothing arrives
    ch.close()
    t.join(5)
    assert not t.is_alive()
