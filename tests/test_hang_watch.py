"""The real-host suite's count of the guardian's hang replacements (tests/ekuiper/hang_watch.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.ekuiper.hang_watch import HangWatch, summary

FROZEN = "2026-12-04 guardian 7: plugin process 41 is frozen: a call outstanding 3.2 s; killing it\n"


def test_counts_frozen_lines_per_test_across_a_replaced_folder(tmp_path: Path) -> None:
    log = tmp_path / "pyai" / "self_heal.log"
    log.parent.mkdir()
    watch = HangWatch(lambda: [log, tmp_path / "missing" / "self_heal.log"], poll_s=3600)  # polled by hand
    watch.set_test("t::slow_board", expected=False)
    log.write_text("guardian 7: watching plugin process 41 (hangs: after 4.0 s)\n")
    watch.poll()
    assert watch.found == []

    watch.set_test("t::sigstop", expected=True)
    with open(log, "a") as f:
        f.write(FROZEN + "guardian 7: plugin process 41 was frozen; started 42 in its place\nguardian 8: plugin pro")
    watch.poll()
    assert [(r.test, r.expected) for r in watch.found] == [("t::sigstop", True)]
    assert watch.unexpected() == []

    # A PUT: eKuiper removes the folder and makes a new one; the new log is read from its start.
    watch.set_test("t::put", expected=False)
    os.unlink(log)
    log.write_text(FROZEN)
    watch.poll()
    watch.poll()  # nothing read twice
    assert [r.test for r in watch.unexpected()] == ["t::put"]
    assert "1 false" in summary(watch) and "t::put" in summary(watch)


def test_a_line_half_written_is_read_once_whole(tmp_path: Path) -> None:
    log = tmp_path / "self_heal.log"
    log.write_text(FROZEN[:30])
    watch = HangWatch(lambda: [log], poll_s=3600)
    watch.poll()
    with open(log, "a") as f:
        f.write(FROZEN[30:])
    watch.poll()
    assert len(watch.found) == 1 and watch.found[0].line == FROZEN.strip()


def test_the_thread_reads_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "self_heal.log"
    log.write_text("")
    watch = HangWatch(lambda: [log], poll_s=0.01).start()
    with open(log, "a") as f:
        f.write(FROZEN)
    watch.stop()  # reads what is left even if no round came after the write
    assert len(watch.found) == 1


def test_summary_without_a_watch() -> None:
    assert "not watched" in summary(None)
