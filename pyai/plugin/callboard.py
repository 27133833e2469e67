"""Calls in flight, on a page of memory the guardian reads: how a frozen plugin is noticed.

A plugin process that stops answering while it is alive (``SIGSTOP``, a native
call that never returns while holding the GIL, a deadlock) cannot notice it
itself, and eKuiper only records a 5 s timeout per call, forever. So each
function channel marks on a shared page when its call began and when it last
made progress (a frame of a window done), and clears it when the reply is
sent; the guardian process (``guardian.py``) reads the page and replaces a
process whose call has made no progress for longer than ``hang_timeout_s``.

The page is a ``memfd`` (no path on any file system: nothing another user could
pre-create or redirect) inherited by the guardian. Layout: a header (the
process's model is loaded: before that a call may wait for the load, which is
no hang) then one slot per function symbol: the ``CLOCK_MONOTONIC`` time in ns
of the call's last progress (0 = no call in flight) and the symbol's name.
The clock is the same for every process of the machine. A slot is written
with one 8-byte store by one thread; the guardian only acts on a value it read
twice, so a torn read cannot make it act.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from typing import Iterator, List, Optional, Tuple

CALLS_FD_ENV = "PYAI_CALLS_FD"
SLOTS = 8
_HEADER = struct.Struct("=q")  # 1 once the model is loaded
_SLOT = struct.Struct("=q32s")  # last progress (monotonic ns, 0 = idle), symbol name
_SIZE = _HEADER.size + SLOTS * _SLOT.size


class CallSlot:
    """One function symbol's slot; used by the thread serving that symbol's channel."""

    __slots__ = ("_mm", "_at")

    def __init__(self, mm: mmap.mmap, offset: int):
        self._mm = mm
        self._at = offset

    def begin(self) -> None:
        """A call arrived (and made progress: the same thing to the guardian)."""
        struct.pack_into("=q", self._mm, self._at, time.monotonic_ns())

    beat = begin

    def end(self) -> None:
        struct.pack_into("=q", self._mm, self._at, 0)


class CallBoard:
    """The page; ``CallBoard()`` makes one, ``CallBoard(fd)`` maps an inherited one."""

    def __init__(self, fd: Optional[int] = None):
        self.owner = fd is None
        if fd is None:
            fd = os.memfd_create("pyai-calls", os.MFD_CLOEXEC)
            os.ftruncate(fd, _SIZE)
        self.fd = fd
        self._mm = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | (mmap.PROT_WRITE if self.owner else 0))
        self._names: List[str] = []
        self._lock = threading.Lock()

    @classmethod
    def inherited(cls) -> Optional["CallBoard"]:
        """The page the plugin process passed to its guardian in ``PYAI_CALLS_FD``."""
        raw = os.environ.get(CALLS_FD_ENV, "")
        if not raw.isdigit():
            return None
        try:
            return cls(int(raw))
        except (OSError, ValueError):
            return None

    def slot(self, symbol: str) -> Optional[CallSlot]:
        """The slot of ``symbol`` (the same one on every call); None when all are taken."""
        with self._lock:
            if symbol in self._names:
                index = self._names.index(symbol)
            elif len(self._names) < SLOTS:
                index = len(self._names)
                self._names.append(symbol)
                offset = _HEADER.size + index * _SLOT.size
                _SLOT.pack_into(self._mm, offset, 0, symbol.encode()[:32])
            else:
                return None
        return CallSlot(self._mm, _HEADER.size + index * _SLOT.size)

    def set_ready(self) -> None:
        _HEADER.pack_into(self._mm, 0, 1)

    @property
    def ready(self) -> bool:
        return _HEADER.unpack_from(self._mm, 0)[0] == 1

    def in_flight(self) -> Iterator[Tuple[str, int]]:
        """(symbol, monotonic ns of its call's last progress) of every call in flight."""
        for index in range(SLOTS):
            since, name = _SLOT.unpack_from(self._mm, _HEADER.size + index * _SLOT.size)
            if since:
                yield name.rstrip(b"\0").decode(errors="replace"), since

    def close(self) -> None:
        self._mm.close()
        try:
            os.close(self.fd)
        except OSError:
            pass


def _stat_fields(pid: int) -> Optional[List[bytes]]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_state(pid: int) -> Optional[str]:
    """The state letter of ``/proc/<pid>/stat`` (R, S, T for stopped, Z...), None when gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` (0 when gone)."""
    fields = _stat_fields(pid)
    try:
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK if fields else 0.0
    except (IndexError, ValueError):
        return 0.0


_CLK_TCK = os.sysconf("SC_CLK_TCK")
# A call without progress counts as frozen at once when the process used less than
# this share of one core over the bound (stopped, deadlocked, blocked in a native
# call); a busy one (a legal call slowed down by other work on the cores, or code
# spinning without end) only after twice the bound.
IDLE_CPU_SHARE = 0.25


class HangCheck:
    """The guardian's side: tells a frozen plugin process from a busy one.

    Frozen means: a call has made no progress for ``bound_s`` while the process
    used next to no CPU (``IDLE_CPU_SHARE``), or for twice ``bound_s`` whatever it
    used; or the process has been stopped (``SIGSTOP``: state T) for ``bound_s``,
    which covers a process stopped between two calls, when it cannot mark the next
    call's arrival. A debugger's stop (state t) does not count as stopped; a call
    in flight while a debugger holds the process is still judged by its progress.
    """

    def __init__(self, board: CallBoard, pid: int, bound_s: float):
        self.board = board
        self.pid = pid
        self.bound_ns = int(bound_s * 1e9)
        self._seen: dict = {}
        self._stopped_since = 0
        self._cpu: List[Tuple[int, float]] = []  # (monotonic ns, process CPU s), the last 2 bounds

    def _cpu_over_bound(self, now: int) -> Optional[float]:
        """CPU seconds the process used over the last bound (None: not watched that long yet)."""
        self._cpu.append((now, process_cpu_s(self.pid)))
        while len(self._cpu) > 2 and self._cpu[1][0] <= now - self.bound_ns:
            self._cpu.pop(0)
        first_t, first_cpu = self._cpu[0]
        return self._cpu[-1][1] - first_cpu if now - first_t >= self.bound_ns else None

    def stuck(self) -> Optional[str]:
        """Why the process is frozen, or None; checked only once its model is loaded,
        on a slot value read on two checks in a row."""
        if not self.board.ready:
            self._seen = {}
            return None
        now = time.monotonic_ns()
        if process_state(self.pid) == "T":
            self._stopped_since = self._stopped_since or now
            if now - self._stopped_since > self.bound_ns:
                return f"stopped (SIGSTOP) for {(now - self._stopped_since) / 1e9:.1f} s"
        else:
            self._stopped_since = 0
        cpu = self._cpu_over_bound(now)
        seen, self._seen = self._seen, dict(self.board.in_flight())
        for symbol, since in self._seen.items():
            if seen.get(symbol) != since or now - since <= self.bound_ns:
                continue
            idle = cpu is not None and cpu < IDLE_CPU_SHARE * self.bound_ns / 1e9
            if idle or now - since > 2 * self.bound_ns:
                return (f"a {symbol} call made no progress for {(now - since) / 1e9:.1f} s"
                        f" ({cpu if cpu is not None else 0:.2f} s of CPU over the last {self.bound_ns / 1e9:.1f} s)")
        return None
