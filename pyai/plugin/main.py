"""Entry point of the plugin process: ``python -u main.py '<host json>'``.

The host starts us with the plugin folder as working directory and passes only
its own PortableConfig; our settings come from ``pyai_config.json`` beside the
executable (and ``PYAI_*`` environment variables).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

PLUGIN_NAME = "pyai"


def setup_logging() -> None:
    level = os.environ.get("PYAI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Optional[List[str]] = None, plugin_dir: Optional[str] = None) -> int:
    started = time.perf_counter()
    setup_logging()
    log = logging.getLogger("pyai")
    from ..classifier import Classifier
    from ..config import load_config
    from ..resize import IMPLEMENTATION
    from .functions import ClassifierHolder, build_functions
    from .runtime import PluginRuntime

    folder = Path(plugin_dir) if plugin_dir else Path(sys.argv[0]).resolve().parent

    def factory() -> Classifier:
        return Classifier(load_config(folder))

    holder = ClassifierHolder(factory)
    if holder.classifier is not None:
        desc = holder.classifier.describe()
        log.info("pyai ready in %.0f ms: %s, resize=%s", (time.perf_counter() - started) * 1000, desc, IMPLEMENTATION)
    runtime = PluginRuntime(PLUGIN_NAME, build_functions(holder))
    try:
        runtime.run()
    except KeyboardInterrupt:
        return 0
    except ConnectionError as exc:
        log.error("pyai: %s", exc)
        return 1
    return 0
