"""Entry point of the plugin process: ``python -u main.py '<host json>'``.

The host starts us with the plugin folder as working directory and passes only
its own PortableConfig; our settings come from ``pyai_config.json`` beside the
executable (and ``PYAI_*`` environment variables).

Order matters: the control handshake goes out first (eKuiper 1.x kills a
plugin that has not greeted it within 5 s, and NumPy, the runtime and the
model are not imported yet), then this process takes the plugin's instance
lock, the model loads on a thread of its own (calls wait for it), the
guardian starts (``guardian.py``), and the host's commands are served.
``main.py --guard ...`` runs the guardian instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

PLUGIN_NAME = "pyai"
# How often a plugin process checks that its folder is still the one it started
# from (eKuiper deletes it on DELETE and on update; a process that replaced a
# dead one is not known to eKuiper, so nobody else would stop it).
FOLDER_CHECK_S = 1.0


def setup_logging() -> None:
    level = os.environ.get("PYAI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Optional[List[str]] = None, plugin_dir: Optional[str] = None) -> int:
    started = time.perf_counter()
    argv = list(sys.argv if argv is None else argv)
    setup_logging()
    if len(argv) > 1 and argv[1] == "--guard":
        from .guardian import guard_main

        return guard_main(argv[2:])

    log = logging.getLogger("pyai")
    from .runtime import PluginRuntime

    executable = Path(argv[0]).resolve() if argv and argv[0] else Path(plugin_dir or ".") / "main.py"
    folder = Path(plugin_dir) if plugin_dir else executable.parent
    host_config = argv[1] if len(argv) > 1 else "{}"

    runtime = PluginRuntime(PLUGIN_NAME, {})
    try:
        runtime.connect()
    except ConnectionError as exc:
        log.error("pyai: %s", exc)
        return 1
    log.info("pyai: handshake sent in %.0f ms", (time.perf_counter() - started) * 1000)
    return Plugin(runtime, folder, executable, host_config, started).run()


class Plugin:
    """One plugin process after its handshake: lock, model, guardian, serving."""

    def __init__(self, runtime: Any, folder: Path, executable: Path, host_config: str, started: float):
        self.runtime = runtime
        self.folder = folder
        self.executable = executable
        self.host_config = host_config
        self.started = started
        self.log = logging.getLogger("pyai")
        self.healed_from = os.environ.get("PYAI_HEALED_FROM")

    def run(self) -> int:
        from ..allocator import fix_mmap_threshold
        from ..config import Config
        from .functions import ClassifierHolder, build_functions
        from .guardian import Guardian, folder_identity

        log, runtime = self.log, self.runtime
        lock = self._instance_lock()
        config, config_error = self._config()
        # Before the model and the first frame allocate: this process lives as long as eKuiper.
        fix_mmap_threshold((config or Config()).malloc_mmap_threshold_kb)
        holder = ClassifierHolder(self._factory(config, config_error))

        guardian: Optional[Guardian] = None
        self_heal = (config is None or config.self_heal) and lock is not None
        if self_heal:
            hang_s = (config or Config()).hang_timeout_s
            runtime.board = self._call_board() if hang_s > 0 else None
            guardian = Guardian(self.executable, self.host_config, PLUGIN_NAME, board=runtime.board,
                                hang_timeout_s=hang_s)
            try:
                guardian.start()
            except OSError as exc:
                log.error("pyai: cannot start the guardian: %s; this process will not heal", exc)
                guardian = None
        if lock is not None:
            lock.record(os.getpid(), guardian.pid if guardian else 0)
        threading.Thread(target=self._when_ready, args=(holder, lock, guardian), name="pyai-ready", daemon=True).start()
        info = self._process_info(guardian)
        runtime.factories = build_functions(holder, info)
        self._watch_model(holder, config)

        signal.signal(signal.SIGTERM, lambda *_: runtime.shutdown("SIGTERM"))
        identity = folder_identity(self.executable)
        threading.Thread(
            target=self._watch_folder, args=(identity, folder_identity), name="pyai-folder", daemon=True
        ).start()
        if self.healed_from:
            log.warning("pyai: replacing plugin process %s, which died", self.healed_from)
        runtime.attach_listening()
        try:
            runtime.serve()
        except KeyboardInterrupt:
            runtime.shutdown("interrupted")
        # Leaving on purpose: nothing to heal.
        if guardian is not None:
            guardian.stop()
        if lock is not None:
            lock.close()
        log.info("pyai: exiting: %s", runtime.ended)
        return 0

    def _instance_lock(self) -> Any:
        """This plugin's instance lock, taken over from a process serving it; None
        (serve, without healing) when it cannot be had safely."""
        from .instance import InstanceLock, LockUnsafe

        try:
            lock = InstanceLock.inherited(PLUGIN_NAME) or InstanceLock(PLUGIN_NAME)
        except (LockUnsafe, OSError) as exc:
            self.log.error("pyai: no instance lock (%s); serving without self-healing", exc)
            return None
        if not lock.held:
            previous = lock.take_over()
            if previous:
                self.log.info("pyai: took over from process %s", previous)
        return lock

    def _call_board(self) -> Any:
        from .callboard import CallBoard

        try:
            return CallBoard()
        except (OSError, AttributeError) as exc:  # AttributeError: no os.memfd_create
            self.log.error("pyai: cannot share calls in flight with the guardian (%s); hangs are not healed", exc)
            return None

    def _config(self):
        from ..config import load_config
        from ..errors import PyaiError

        try:
            return load_config(self.folder), None
        except (PyaiError, OSError, ValueError) as exc:
            return None, exc

    def _factory(self, config: Any, config_error: Optional[Exception]) -> Callable[[], Any]:
        def factory():
            if config_error is not None:
                raise config_error
            from ..classifier import Classifier

            return Classifier(config)

        return factory

    def _watch_model(self, holder: Any, config: Any) -> None:
        """Model changes by config edit (pyai/plugin/model_watch.py), once the first load ended."""
        from ..config import Config
        from .model_watch import ModelWatch

        interval = config.reload_check_s if config is not None else Config.reload_check_s
        if interval <= 0:
            return

        def build(cfg: Any) -> Any:
            from ..classifier import Classifier

            return Classifier(cfg)

        watch = ModelWatch(self.folder, holder, build, config, interval, lambda: self.runtime.ended is not None)

        def start() -> None:
            holder.wait()
            watch.write_status()
            watch.start()

        threading.Thread(target=start, name="pyai-watch-start", daemon=True).start()

    def _when_ready(self, holder: Any, lock: Any, guardian: Any) -> None:
        holder.wait()
        if self.runtime.board is not None:
            # From now on a call that makes no progress is a hang, not a wait for the model.
            self.runtime.board.set_ready()
        if self.runtime.ended is None and lock is not None:
            lock.record(os.getpid(), guardian.pid if guardian else 0, ready=True)
        if holder.classifier is not None:
            from ..resize import IMPLEMENTATION

            self.log.info(
                "pyai ready in %.0f ms (model %.0f ms): %s, resize=%s",
                (time.perf_counter() - self.started) * 1000,
                (holder.load_seconds or 0) * 1000,
                holder.classifier.describe(),
                IMPLEMENTATION,
            )

    def _process_info(self, guardian: Any) -> Callable[[], Dict[str, Any]]:
        from .guardian import HEAL_REASON_ENV, replacements

        pid = os.getpid()
        healed_from = int(self.healed_from) if self.healed_from and self.healed_from.isdigit() else None
        counts = replacements()
        reason = os.environ.get(HEAL_REASON_ENV) if healed_from else None

        def info() -> Dict[str, Any]:
            return {
                "pid": pid,
                "healed_from": healed_from,
                "guardian_pid": guardian.pid if guardian else None,
                "uptime_s": round(time.perf_counter() - self.started, 1),
                # Since eKuiper last started a process of its own: processes replaced
                # because they died and because they were frozen; why this one was.
                "replacements": counts,
                "replaced_because": reason,
                # Requests each symbol answered, and answered with an error, in this process.
                "calls": self.runtime.call_counts(),
            }

        return info

    def _watch_folder(self, identity: Any, current: Callable[[Path], Any]) -> None:
        while self.runtime.ended is None:
            time.sleep(FOLDER_CHECK_S)
            if current(self.executable) != identity:
                self.runtime.shutdown("the plugin folder was removed or replaced (plugin deleted or updated)")
                return
