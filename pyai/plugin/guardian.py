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
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple

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


def wait_for_exit(pid: int, poll_s: float = 0.05) -> None:
    """Block until process ``pid`` (not our child) has exited."""
    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process ends
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        return
    while process_running(pid):
        time.sleep(poll_s)


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
    log.info("guardian %d: watching plugin process %d", os.getpid(), pid)
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
    env = dict(os.environ)
    env[FAILED_STARTS_ENV] = str(failures)
    env[HEALED_FROM_ENV] = str(pid)
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
    log.warning("guardian %d: plugin process %d died; started %d in its place", os.getpid(), pid, proc.pid)
    lock.close()  # the replacement holds it now
    return 0


def guard_main(args: Sequence[str]) -> int:
    """``main.py --guard <pid> <plugin name> '<host config>'``."""
    pid, plugin_name, host_config = int(args[0]), args[1], args[2]
    executable = Path(sys.argv[0]).resolve()
    return guard(pid, executable, host_config, plugin_name, sys.executable)


class Guardian:
    """The plugin process's side: starts its guardian, and another if that one dies."""

    def __init__(self, executable: Path, host_config: str, plugin_name: str, python: str = sys.executable):
        self.executable = executable
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
            with open_log(self.executable.parent) as out:
                self.proc = subprocess.Popen(
                    [self.python, "-u", str(self.executable), "--guard", str(os.getpid()), self.plugin_name, self.host_config],
                    cwd=self.executable.parent,
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
