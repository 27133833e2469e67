"""One serving process per plugin: a lock file that the serving process holds.

The host's addresses are fixed (``/tmp/plugin_<name>.ipc``), so two of our
processes would both dial them and the host would hand each call to either.
That can happen after a process healed itself (``guardian.py``) and eKuiper then
starts one of its own (a function used for the first time, or kuiperd booting
again): the process eKuiper started wins, because eKuiper tracks and stops
that one. It asks the holder to leave (SIGTERM, which it handles by closing its
channels and exiting without healing) and takes the lock.

The lock is ``flock`` on ``/tmp/pyai-<uid>/plugin_<name>.lock``: the kernel
drops it when its holder dies, however it dies, and a guardian can pass a held
lock to the process it starts (an inherited file descriptor shares the lock).
It is machine-wide like the host's IPC paths it guards (``/tmp`` is where they
are, whatever TMPDIR says), but in a folder of our own: ``/tmp`` is writable by
every local user, who could otherwise create the lock file first, or a symlink
by its name that our open would follow and our writes truncate. The folder is
made mode 0700 and used only if it is a real folder (not a symlink), ours and
closed to others; the file is opened with ``O_NOFOLLOW``. A folder that fails
these checks (another user made it first) leaves the process serving without
the lock, and so without self-healing, and says why.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import stat
import time
from typing import Optional

log = logging.getLogger(__name__)

LOCK_DIR = "/tmp/pyai-{uid}"
LOCK_NAME = "plugin_{}.lock"
# How long the process eKuiper started waits for a holder to leave after SIGTERM,
# then after SIGKILL. A holder leaves in a few ms; an emulated or swapped-out one
# may need longer.
TERM_WAIT_S = 3.0
KILL_WAIT_S = 2.0
LOCK_FD_ENV = "PYAI_LOCK_FD"


class LockUnsafe(RuntimeError):
    """The lock's folder is not safely ours."""


def lock_dir(uid: Optional[int] = None) -> str:
    """Our private folder under /tmp, made if missing; LockUnsafe unless it is a real
    folder owned by us that no one else can write to or list."""
    uid = os.getuid() if uid is None else uid
    path = LOCK_DIR.format(uid=uid)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise LockUnsafe(f"{path} is not a folder (a symlink or a file someone made)")
    if st.st_uid != uid:
        raise LockUnsafe(f"{path} belongs to uid {st.st_uid}, not to us ({uid}); remove it")
    if st.st_mode & 0o077:
        raise LockUnsafe(f"{path} is open to other users (mode {st.st_mode & 0o777:o}); remove it")
    return path


def lock_path(plugin_name: str) -> str:
    return os.path.join(lock_dir(), LOCK_NAME.format(plugin_name))


class InstanceLock:
    """The lock file of one plugin, held (or not) through one open file descriptor."""

    def __init__(self, plugin_name: str, fd: Optional[int] = None):
        self.path = lock_path(plugin_name) if fd is None else f"(inherited fd {fd})"
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self.fd = fd if fd is not None else os.open(self.path, flags, 0o600)
        self.held = fd is not None

    @classmethod
    def inherited(cls, plugin_name: str) -> Optional["InstanceLock"]:
        """The held lock a guardian passed in ``PYAI_LOCK_FD``, if any."""
        raw = os.environ.pop(LOCK_FD_ENV, "")
        if not raw.isdigit():
            return None
        fd = int(raw)
        try:
            os.set_inheritable(fd, False)
        except OSError:
            return None
        return cls(plugin_name, fd)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self.held = True
        return True

    def record(self, pid: int, guardian_pid: int = 0, ready: bool = False) -> None:
        """Write who holds the lock (``<pid> <guardian pid> [ready]``): for a successor to
        ask to leave, and for a guardian to tell a process that died while starting."""
        line = f"{pid} {guardian_pid}{' ready' if ready else ''}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, line, 0)

    def _fields(self) -> list:
        try:
            return os.pread(self.fd, 64, 0).decode(errors="replace").split()
        except OSError:
            return []

    def holder(self) -> Optional[int]:
        text = self._fields()
        return int(text[0]) if text and text[0].isdigit() else None

    def was_ready(self, pid: int) -> bool:
        """Whether process ``pid`` got as far as serving with its model loaded."""
        text = self._fields()
        return bool(text) and text[0] == str(pid) and "ready" in text[2:]

    def take_over(self) -> Optional[int]:
        """Acquire the lock, asking a live holder to leave first; returns its pid, if any."""
        if self.try_acquire():
            return None
        # The holder is re-read on every round: a guardian holds the lock for a
        # moment before the replacement it starts writes its own pid.
        signalled: dict = {}
        deadline = time.monotonic() + TERM_WAIT_S + KILL_WAIT_S
        holder = None
        while time.monotonic() < deadline:
            if self.try_acquire():
                return holder
            holder = self.holder()
            if holder and holder != os.getpid():
                first = signalled.get(holder)
                now = time.monotonic()
                if first is None:
                    log.warning("pyai: process %s serves this plugin's channels; taking over", holder)
                    _signal(holder, signal.SIGTERM)
                    signalled[holder] = now
                elif now - first > TERM_WAIT_S:
                    _signal(holder, signal.SIGKILL)
            time.sleep(0.01)
        raise RuntimeError(f"cannot take over from process {holder}: {self.path} stays locked")

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.held = False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
