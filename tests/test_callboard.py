"""The guardian's view of a plugin process's calls (pyai/plugin/callboard.py), without a
host: a call that makes no progress for the bound, a process stopped for the bound,
and what must never count (a call making progress, a wait for the model, a busy process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pyai.config import Config
from pyai.errors import ModelError
from pyai.plugin.callboard import CALLS_FD_ENV, CallBoard, HangCheck, process_state
from pyai.plugin.guardian import HANG_BOUND_ENV, REPLACEMENTS_ENV, hang_check, replacements
from pyai.plugin.instance import LockUnsafe, lock_dir

BOUND_S = 0.3


def _checks(check: HangCheck, seconds: float):
    """HangCheck.stuck() every 50 ms for ``seconds``; the first reason it gives, if any."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        why = check.stuck()
        if why:
            return why
        time.sleep(0.05)
    return None


@pytest.fixture
def board():
    b = CallBoard()
    yield b
    b.close()


def test_a_call_without_progress_is_a_hang_once_the_model_is_loaded(board):
    slot = board.slot("labelImage")
    check = HangCheck(CallBoard(board.fd), os.getpid(), BOUND_S)
    slot.begin()
    assert _checks(check, 3 * BOUND_S) is None, "a call waiting for the model load is no hang"
    board.set_ready()
    slot.beat()
    why = _checks(check, 4 * BOUND_S)
    assert why and why.startswith("a labelImage call made no progress")
    slot.end()
    assert _checks(check, 3 * BOUND_S) is None


def test_progress_and_idle_are_never_a_hang(board):
    board.set_ready()
    slot = board.slot("labelImages")
    assert board.slot("labelImages") is not None and list(board.in_flight()) == []
    check = HangCheck(CallBoard(board.fd), os.getpid(), BOUND_S)
    slot.begin()
    for _ in range(20):  # a long window whose frames keep finishing
        time.sleep(BOUND_S / 3)
        slot.beat()
        assert check.stuck() is None
    slot.end()
    assert list(board.in_flight()) == []


def test_the_guardians_mapping_is_read_only(board):
    seen = CallBoard(board.fd)
    board.slot("pyaiStats").begin()
    assert [name for name, _ in seen.in_flight()] == ["pyaiStats"]
    with pytest.raises(TypeError):
        seen._mm[0] = 1


def test_a_stopped_process_is_a_hang_and_a_running_one_is_not(board):
    board.set_ready()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        check = HangCheck(CallBoard(board.fd), child.pid, BOUND_S)
        assert _checks(check, 3 * BOUND_S) is None
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.1)
        assert process_state(child.pid) == "T"
        why = _checks(check, 5 * BOUND_S)
        assert why and why.startswith("stopped (SIGSTOP)")
    finally:
        child.kill()
        child.wait()
    assert process_state(child.pid) is None


def test_replacement_counts_are_passed_on():
    assert replacements({}) == {"died": 0, "hung": 0}
    assert replacements({REPLACEMENTS_ENV: "died=2,hung=1,bogus=x"}) == {"died": 2, "hung": 1}


def test_hang_bound_stays_above_the_longest_legal_decode():
    assert 3.0 <= Config().hang_timeout_s < 5.0  # eKuiper gives a reply 5 s
    assert Config(hang_timeout_s=0).hang_timeout_s == 0
    with pytest.raises(ModelError, match="hang_timeout_s"):
        Config(hang_timeout_s=2.5)  # not a second above max_decode_ms (2 s)
    assert Config(max_decode_ms=1000, hang_timeout_s=2.0).hang_timeout_s == 2.0
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ModelError, match="hang_timeout_s"):
            Config(hang_timeout_s=bad)


def test_lock_folder_is_private_and_refused_when_not_ours(tmp_path, monkeypatch):
    from pyai.plugin import instance

    path = lock_dir()
    st = os.lstat(path)
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
    # Someone else's folder (or a symlink) in its place is refused, never used.
    target = tmp_path / "elsewhere"
    target.mkdir()
    monkeypatch.setattr(instance, "LOCK_DIR", str(tmp_path / "link-{uid}"))
    os.symlink(target, tmp_path / f"link-{os.getuid()}")
    with pytest.raises(LockUnsafe, match="not a folder"):
        lock_dir()
    monkeypatch.setattr(instance, "LOCK_DIR", str(tmp_path / "open-{uid}"))
    (tmp_path / f"open-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(tmp_path / f"open-{os.getuid()}", 0o777)
    with pytest.raises(LockUnsafe, match="open to other users"):
        lock_dir()
    monkeypatch.setattr(instance, "LOCK_DIR", str(tmp_path / "theirs-{uid}"))
    with pytest.raises(LockUnsafe, match="belongs to uid"):
        lock_dir(uid=os.getuid() + 12345)


def test_a_busy_call_is_given_twice_the_bound(board):
    """A call without progress in a process that burns CPU (a legal call slowed down by
    other work on the cores) is not frozen at the bound, only at twice the bound."""
    import threading

    board.set_ready()
    slot = board.slot("labelImage")
    check = HangCheck(CallBoard(board.fd), os.getpid(), BOUND_S)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        slot.begin()
        t0 = time.monotonic()
        why = _checks(check, 6 * BOUND_S)
        took = time.monotonic() - t0
    finally:
        stop.set()
        spinner.join()
        slot.end()
    assert why and "made no progress" in why
    assert took > 2 * BOUND_S, f"a busy call was taken for frozen after {took:.2f} s"


@pytest.mark.parametrize("bound", ["inf", "nan", "-1", "0", "x"])
def test_guardian_takes_a_bound_it_cannot_use_as_no_hang_watch(board, monkeypatch, bound):
    # hang_timeout_s = inf passes the config's checks: the guardian must not die on it at
    # start (it would be started again every second, for ever), only not watch for hangs.
    monkeypatch.setenv(CALLS_FD_ENV, str(board.fd))
    monkeypatch.setenv(HANG_BOUND_ENV, bound)
    assert hang_check(os.getpid()) is None
    monkeypatch.setenv(CALLS_FD_ENV, str(os.dup(board.fd)))  # the guardian's own fd, closed below
    monkeypatch.setenv(HANG_BOUND_ENV, "3.5")
    check = hang_check(os.getpid())
    assert check is not None and check.bound_ns == 3_500_000_000
    check.board.close()
