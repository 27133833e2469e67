"""Self-healing: a small watcher process that replaces the plugin process if it dies.

eKuiper never restarts a function plugin's process: after a crash (or a
``kill -9``) every call to its functions fails with a 5 s timeout, one call at
a time across all rules, until someone reinstalls the plugin or restarts
kuiperd. The host keeps its side of every channel listening for the life of
kuiperd, though, and re-sends a call when a new peer greets it. So each
plugin process starts a guardian: a second Python process, in a session of its
own, that waits for the plugin process to die and then starts a replacement,
which dials the same channels (``PluginRuntime.attach_listening``). The call in
flight is re-sent by the host to the new process when it says hello, so at most
that one call fails, and only if the replacement takes more than the host's 5 s.

A process that stops answering while alive (``SIGSTOP``, a native call that
never returns, a deadlock) is replaced too: the guardian reads the plugin
process's calls in flight (``callboard.py``) and, when one has made no progress
for ``hang_timeout_s`` (or the process has been stopped that long), kills it
with ``SIGKILL`` (a stopped process dies too, so a later ``SIGCONT`` finds
nothing: never two servers, never a late duplicate answer) and heals as after a
death. Each replacement passes on the counts of replacements and why
(``PYAI_REPLACEMENTS``), which ``pyaiStats()`` shows.

The guardian does not heal when the death was meant:

- the plugin process asked it to leave first (a deliberate exit: kuiperd gone,
  taken over, SIGTERM);
- the plugin folder is gone or is a new one: eKuiper deletes the folder before
  it kills the process on DELETE and on update (PUT);
- kuiperd no longer listens on the control channel (it is shutting down);
- another process already holds the instance lock (eKuiper started one);
- five replacements in a row died before their model was loaded (a process that
  dies while starting would loop).

Neither the guardian nor a replacement writes to the plugin process's stdout:
that is a pipe eKuiper reads, and eKuiper waits for every holder of it to close
it before it records the exit. Their log goes to ``self_heal.log`` in the plugin
folder.
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from .callboard import CALLS_FD_ENV, CallBoard, HangCheck
from .instance import LOCK_FD_ENV, InstanceLock
from .runtime import CONTROL_URL, listening

log = logging.getLogger(__name__)

LOG_NAME = "self_heal.log"
LOG_MAX_BYTES = 4 << 20
# After the plugin process dies, wait this long before deciding: kuiperd kills
# its plugins just before it exits, and should be gone by then.
GRACE_S = 0.25
FAILED_STARTS_ENV = "PYAI_FAILED_STARTS"
HEALED_FROM_ENV = "PYAI_HEALED_FROM"
# Replacements so far in this line of processes and the last one's reason:
# "died=1,hung=2" and a line of text.
REPLACEMENTS_ENV = "PYAI_REPLACEMENTS"
HEAL_REASON_ENV = "PYAI_HEAL_REASON"
# The plugin process's hang bound, for its guardian (0 = do not watch for hangs).
HANG_BOUND_ENV = "PYAI_GUARD_HANG_S"
# How often the guardian reads the calls in flight: a hang is acted on within
# the bound plus two of these.
HANG_POLL_S = 0.25
MAX_FAILED_STARTS = 5
# A guardian that dies is replaced at most this often.
RESPAWN_MIN_INTERVAL_S = 1.0

Identity = Optional[Tuple[int, int, int]]


def folder_identity(executable: Path) -> Identity:
    """(folder inode, executable inode, executable ctime): changes when eKuiper removes the
    plugin folder and unzips a new one; None when it is gone."""
    try:
        d = os.stat(executable.parent)
        f = os.stat(executable)
    except OSError:
        return None
    return d.st_ino, f.st_ino, f.st_ctime_ns


def open_log(folder: Path):
    path = folder / LOG_NAME
    try:
        if path.stat().st_size > LOG_MAX_BYTES:
            path.unlink()
    except OSError:
        pass
    return open(path, "ab", buffering=0)


def wait_for_exit(pid: int, poll_s: float = 0.05, hang: Optional[HangCheck] = None) -> Optional[str]:
    """Block until process ``pid`` (not our child) has exited, or until ``hang`` says
    it is frozen (then returns why)."""
    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process ends
    except (AttributeError, OSError):
        fd = -1
    timeout = HANG_POLL_S if hang is not None else None
    try:
        while True:
            if fd >= 0:
                if select.select([fd], [], [], timeout)[0]:
                    return None
            elif not process_running(pid):
                return None
            else:
                time.sleep(poll_s if hang is None else HANG_POLL_S)
            why = hang.stuck() if hang is not None else None
            if why is not None:
                return why
    finally:
        if fd >= 0:
            os.close(fd)


def replacements(env: Optional[dict] = None) -> Dict[str, int]:
    """{"died": n, "hung": m}: the replacements so far, from ``PYAI_REPLACEMENTS``."""
    out = {"died": 0, "hung": 0}
    for item in (os.environ if env is None else env).get(REPLACEMENTS_ENV, "").split(","):
        key, _, count = item.partition("=")
        if key in out and count.isdigit():
            out[key] = int(count)
    return out


def hang_check(pid: int) -> Optional[HangCheck]:
    """The guardian's hang check of ``pid``, from what its plugin process passed on."""
    raw = os.environ.pop(HANG_BOUND_ENV, "")
    try:
        bound = float(raw)
    except ValueError:
        return None
    if not math.isfinite(bound) or bound <= 0:
        # inf passes the config's checks; HangCheck's int(bound * 1e9) would raise, and a
        # guardian that dies at start is started again every second, for ever.
        return None
    board = CallBoard.inherited()
    return HangCheck(board, pid, bound) if board is not None else None


def process_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # A zombie has ended: its parent just has not collected it yet.
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def failed_starts(env: Optional[dict] = None) -> int:
    raw = (os.environ if env is None else env).get(FAILED_STARTS_ENV, "0")
    return int(raw) if raw.isdigit() else 0


def why_not_heal(plugin_name: str, executable: Path, identity: Identity, failures: int) -> Optional[str]:
    if identity is None or folder_identity(executable) != identity:
        return "the plugin folder was removed or replaced (plugin deleted or updated)"
    if not listening(CONTROL_URL.format(plugin_name)):
        return "kuiperd no longer listens (it stopped)"
    if failures >= MAX_FAILED_STARTS:
        return f"{failures} processes in a row died before their model was loaded; giving up"
    return None


def guard(pid: int, executable: Path, host_config: str, plugin_name: str, python: str) -> int:
    """The guardian process: wait for ``pid`` to die, then start a replacement if it should."""
    identity = folder_identity(executable)
    hang = hang_check(pid)
    log.info("guardian %d: watching plugin process %d (hangs: %s)", os.getpid(), pid,
             f"after {hang.bound_ns / 1e9:.1f} s" if hang else "not watched")
    frozen = wait_for_exit(pid, hang=hang)
    if frozen is not None:
        log.warning("guardian %d: plugin process %d is frozen: %s; killing it", os.getpid(), pid, frozen)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for_exit(pid)
    time.sleep(GRACE_S)
    lock = InstanceLock(plugin_name)
    # A process that dies before it is ready counts towards giving up; one that
    # served (then was killed, or crashed on a frame) starts the count again.
    failures = 0 if lock.was_ready(pid) else failed_starts() + 1
    reason = why_not_heal(plugin_name, executable, identity, failures)
    if reason is None and not lock.try_acquire():
        reason = "another process serves the plugin now"
    if reason is not None:
        log.info("guardian %d: plugin process %d ended; not replacing it: %s", os.getpid(), pid, reason)
        lock.close()
        return 0
    env = {k: v for k, v in os.environ.items() if k not in (CALLS_FD_ENV, HANG_BOUND_ENV)}
    env[FAILED_STARTS_ENV] = str(failures)
    env[HEALED_FROM_ENV] = str(pid)
    counts = replacements()
    counts["hung" if frozen else "died"] += 1
    env[REPLACEMENTS_ENV] = ",".join(f"{k}={v}" for k, v in counts.items())
    env[HEAL_REASON_ENV] = f"process {pid} {'was frozen: ' + frozen if frozen else 'died'}"
    env[LOCK_FD_ENV] = str(lock.fileno())
    os.set_inheritable(lock.fileno(), True)
    with open_log(executable.parent) as out:
        proc = subprocess.Popen(
            [python, "-u", str(executable), host_config],
            cwd=executable.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(lock.fileno(),),
            start_new_session=True,
        )
    log.warning("guardian %d: plugin process %d %s; started %d in its place", os.getpid(), pid,
                "was frozen" if frozen else "died", proc.pid)
    lock.close()  # the replacement holds it now
    return 0


def guard_main(args: Sequence[str]) -> int:
    """``main.py --guard <pid> <plugin name> '<host config>'``."""
    pid, plugin_name, host_config = int(args[0]), args[1], args[2]
    executable = Path(sys.argv[0]).resolve()
    return guard(pid, executable, host_config, plugin_name, sys.executable)


class Guardian:
    """The plugin process's side: starts its guardian, and another if that one dies."""

    def __init__(self, executable: Path, host_config: str, plugin_name: str, python: str = sys.executable,
                 board: Optional[CallBoard] = None, hang_timeout_s: float = 0.0):
        self.executable = executable
        self.board = board
        self.hang_timeout_s = hang_timeout_s if board is not None else 0.0
        self.host_config = host_config
        self.plugin_name = plugin_name
        self.python = python
        self.proc: Optional[subprocess.Popen] = None
        self.spawned = 0
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        proc = self.proc
        return proc.pid if proc is not None else 0

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._watch, name="pyai-guardian-watch", daemon=True).start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping:
                return
            env = dict(os.environ)
            fds: Tuple[int, ...] = ()
            if self.board is not None and self.hang_timeout_s > 0:
                env[CALLS_FD_ENV] = str(self.board.fd)
                env[HANG_BOUND_ENV] = repr(self.hang_timeout_s)
                fds = (self.board.fd,)
            with open_log(self.executable.parent) as out:
                self.proc = subprocess.Popen(
                    [self.python, "-u", str(self.executable), "--guard", str(os.getpid()), self.plugin_name, self.host_config],
                    cwd=self.executable.parent,
                    env=env,
                    pass_fds=fds,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.spawned += 1

    def _watch(self) -> None:
        while True:
            proc = self.proc
            if proc is None:
                return
            rc = proc.wait()
            if self._stopping:
                return
            log.warning("pyai: guardian %d exited (%s); starting another", proc.pid, rc)
            time.sleep(RESPAWN_MIN_INTERVAL_S)
            try:
                self._spawn()
            except OSError as exc:
                log.error("pyai: cannot start a guardian: %s; this process will not heal", exc)
                return

    def stop(self) -> None:
        """The plugin process is leaving on purpose: the guardian must not replace it."""
        with self._lock:
            self._stopping = True
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
