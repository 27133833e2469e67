"""Errors that carry a one-line, user-facing reason.

Everything the plugin reports back to eKuiper as ``state:false`` is a
:class:`BadInput`; its ``str()`` is the reason shown in the rule status, so it
must be one line and never contain a traceback.
"""


class PyaiError(Exception):
    """Base class of pyai's own errors."""


class BadInput(PyaiError, ValueError):
    """The caller's frame or arguments cannot be labelled (not base64, not an image, too big...)."""


class ModelError(PyaiError, RuntimeError):
    """The model or labels file cannot be used."""


class ClosedError(PyaiError, RuntimeError):
    """Work was submitted to an engine that is closed."""
