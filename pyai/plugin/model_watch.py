"""A model change while cameras stream: edit ``pyai_config.json`` or replace the model file.

eKuiper never restarts a function plugin on its own, and replacing the plugin (a
``PUT`` of a new zip) reinstalls it: its pip install takes seconds, during which
no frame is labelled. So the plugin process watches its config file and the model
and labels files the config names (every ``reload_check_s``); on a change that has
stayed unchanged for one more check (a file still being copied is not read), it
loads the new classifier beside the old one, which goes on answering, and swaps
them (``ClassifierHolder.replace``): only the calls in flight at that moment end
on the old model. Then it acknowledges: a log line, ``pyaiStats()`` shows the new
model and ``model_generation``, and ``pyai_model_status.json`` in the plugin folder
is rewritten. A change that cannot load (bad config, wrong labels, broken model)
is refused with its one-line reason in the log and the status file, and the old
model goes on serving.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from ..config import CONFIG_FILE_NAME, Config, load_config
from .runtime import one_line

log = logging.getLogger(__name__)

STATUS_FILE_NAME = "pyai_model_status.json"

Fingerprint = Tuple[Any, ...]


def _stat(path: Optional[str]) -> Tuple[Any, ...]:
    if not path:
        return ()
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ModelWatch:
    """Polls the config and the files it names; reloads the holder's classifier on a change."""

    def __init__(self, folder: Path, holder: Any, build: Callable[[Config], Any], config: Optional[Config],
                 interval_s: float, stopped: Callable[[], bool]):
        self.folder = folder
        self.config_path = folder / CONFIG_FILE_NAME
        self.status_path = folder / STATUS_FILE_NAME
        self.holder = holder
        self.build = build
        self.interval_s = interval_s
        self.stopped = stopped
        # The config whose files are watched: the served one, or a newer one that was refused
        # (its model may not be there yet: copying it in must still be noticed).
        self._watched = config
        self._seen = self._fingerprint(config)
        self.thread: Optional[threading.Thread] = None

    def _fingerprint(self, config: Optional[Config]) -> Fingerprint:
        files = (config.model, config.labels) if config is not None else ()
        return (_stat(str(self.config_path)),) + tuple(_stat(f) for f in files)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="pyai-model-watch", daemon=True)
        self.thread.start()

    def write_status(self, error: Optional[str] = None) -> None:
        clf = self.holder.classifier
        status = {
            "generation": self.holder.generation,
            "model": clf.config.model if clf is not None else None,
            "labels": clf.card.labels_source if clf is not None else None,
            "acknowledged_at": time.time(),
            "pid": os.getpid(),
            "error": error or (self.holder.error if clf is None else None),
        }
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(status) + "\n")
            os.replace(tmp, self.status_path)
        except OSError as exc:  # a read-only plugin folder: the log still says it
            log.debug("pyai: cannot write %s: %s", self.status_path, exc)

    def _run(self) -> None:
        pending: Optional[Fingerprint] = None
        while not self.stopped():
            time.sleep(self.interval_s)
            now = self._fingerprint(self._watched)
            if now == self._seen:
                pending = None
                continue
            if now != pending:
                pending = now  # changed since the last check: wait until it holds still
                continue
            pending = None
            self.reload(now)

    def reload(self, fingerprint: Optional[Fingerprint] = None) -> bool:
        """Load the config and its model afresh and swap them in; False (old model kept) on a refusal."""
        started = time.perf_counter()
        config: Optional[Config] = None
        try:
            config = load_config(self.folder)
            # Taken before loading: a file that changes while it loads is noticed next check.
            seen = self._fingerprint(config)
            clf = self.build(config)
        except Exception as exc:  # noqa: BLE001 - any failed load is refused; the watch thread must live on
            reason = f"pyai: model change refused, the previous model goes on: {one_line(exc)}"
            log.error("%s", reason)
            if config is not None:
                self._watched = config
            self._seen = self._fingerprint(self._watched)
            self.holder.failed(reason)
            self.write_status(reason)
            return False
        loaded = time.perf_counter()
        self.holder.replace(clf)
        self._watched, self._seen = config, seen
        self.write_status()
        log.info("pyai: model changed (generation %d) in %.0f ms (load %.0f ms, drain %.0f ms): %s",
                 self.holder.generation, (time.perf_counter() - started) * 1000, (loaded - started) * 1000,
                 (time.perf_counter() - loaded) * 1000, clf.describe())
        return True
