"""pyai: label camera frames with a TensorFlow Lite image classifier, in or out of eKuiper."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classifier import Classifier
    from .config import Config, load_config
    from .crop import Crop
    from .errors import BadInput, ClosedError, ModelError, PyaiError

__all__ = ["Classifier", "Config", "Crop", "load_config", "BadInput", "ClosedError", "ModelError", "PyaiError"]
__version__ = "1.0.0"

# Imported on first use (PEP 562): the plugin process must send eKuiper its
# handshake before NumPy and the runtime load, and `import pyai.plugin.main`
# runs this file first.
_HOME = {
    "Classifier": ".classifier",
    "Config": ".config",
    "load_config": ".config",
    "Crop": ".crop",
    "BadInput": ".errors",
    "ClosedError": ".errors",
    "ModelError": ".errors",
    "PyaiError": ".errors",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'pyai' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(list(globals()) + list(_HOME))
