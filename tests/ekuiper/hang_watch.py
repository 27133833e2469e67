"""Counts the guardian's hang replacements over a whole real-host run (issue #20:
"0 false replacements in the whole ``tox -e ekuiper`` run").

The guardian writes "plugin process N is frozen: ...; killing it" into the plugin
folder's ``self_heal.log``, which eKuiper deletes with the folder on every PUT and
DELETE; so the log is read while the run goes on: every ``poll_s``, the new lines
of the ``self_heal.log`` of every kuiperd the suite made (``Kuiperd.instances``).
Each replacement is charged to the test running when it was seen; a test that
freezes processes on purpose carries ``@pytest.mark.freezes``, and only
replacements seen outside such tests are false ones.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

# The guardian's line when it kills a frozen plugin process (pyai/plugin/guardian.py).
FROZEN_MARK = " is frozen: "


@dataclass
class Replacement:
    test: str  # the test running when it was seen ("" between tests)
    expected: bool  # that test freezes processes on purpose
    line: str


class HangWatch:
    """A thread reading the guardian logs named by ``logs()``, from where it last stopped."""

    def __init__(self, logs: Callable[[], Iterable[Path]], poll_s: float = 0.5) -> None:
        self.logs, self.poll_s = logs, poll_s
        self.found: List[Replacement] = []
        self.test, self.expected = "", False
        self._seen: Dict[Path, Tuple[int, int]] = {}  # path -> (inode, bytes read)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hang-watch", daemon=True)

    def start(self) -> "HangWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.poll()  # what was written since the last round

    def set_test(self, test: str, expected: bool) -> None:
        # Read what came before under the previous test's name first.
        self.poll()
        with self._lock:
            self.test, self.expected = test, expected

    def replacements(self) -> List[Replacement]:
        with self._lock:
            return list(self.found)

    def unexpected(self) -> List[Replacement]:
        return [r for r in self.replacements() if not r.expected]

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        for path in list(self.logs()):
            for line in self._new_lines(path):
                if FROZEN_MARK in line:
                    with self._lock:
                        self.found.append(Replacement(self.test, self.expected, line.strip()))

    def _new_lines(self, path: Path) -> List[str]:
        with self._lock:
            try:
                st = os.stat(path)
            except OSError:
                return []
            inode, done = self._seen.get(path, (st.st_ino, 0))
            if inode != st.st_ino or st.st_size < done:  # a new plugin folder, or the log rotated
                done = 0
            if st.st_size == done:
                self._seen[path] = (st.st_ino, done)
                return []
            try:
                with open(path, "rb") as f:
                    f.seek(done)
                    data = f.read(st.st_size - done)
            except OSError:
                return []
            # Only whole lines: a line being written is read on the next round.
            end = data.rfind(b"\n") + 1
            self._seen[path] = (st.st_ino, done + end)
            return data[:end].decode(errors="replace").splitlines()


def summary(watch: Optional[HangWatch]) -> str:
    if watch is None:
        return "hang replacements: not watched"
    found, bad = watch.replacements(), watch.unexpected()
    lines = [f"hang replacements by the guardian: {len(found)} ({len(found) - len(bad)} in tests that freeze on purpose, "
             f"{len(bad)} false)"]
    lines += [f"  FALSE, during {r.test or '(between tests)'}: {r.line}" for r in bad]
    return "\n".join(lines)
