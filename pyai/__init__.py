"""pyai: label camera frames with a TensorFlow Lite image classifier, in or out of eKuiper."""

from .classifier import Classifier
from .config import Config, load_config
from .crop import Crop
from .errors import BadInput, ClosedError, ModelError, PyaiError

__all__ = ["Classifier", "Config", "Crop", "load_config", "BadInput", "ClosedError", "ModelError", "PyaiError"]
__version__ = "1.0.0"
