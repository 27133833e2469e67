"""Errors that carry a one-line, user-facing reason.

Everything the plugin reports back to eKuiper as ``state:false`` is a
:class:`BadInput`; its ``str()`` is the reason shown in the rule status, so it
must be one line and never contain a traceback.
"""

import re


class PyaiError(Exception):
    """Base class of pyai's own errors."""


class BadInput(PyaiError, ValueError):
    """The caller's frame or arguments cannot be labelled (not base64, not an image, too big...)."""


class ModelError(PyaiError, RuntimeError):
    """The model or labels file cannot be used."""


class ClosedError(PyaiError, RuntimeError):
    """Work was submitted to an engine that is closed."""


# Pillow's "cannot identify image file <_io.BytesIO object at 0x7f...>": an
# object's repr says nothing to a user and differs from call to call.
_OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def one_line_reason(exc: BaseException) -> str:
    """A decoding library's exception as a BadInput reason: its first line, at most 200 characters."""
    text = str(exc).strip().splitlines()
    line = _OBJECT_REPR.sub("", text[0]).strip() if text else ""
    return line[:200] or type(exc).__name__


def drop_tracebacks(exc: BaseException) -> BaseException:
    """``exc`` and the exceptions it was raised from, without their tracebacks; returns
    ``exc``. A kept error (a future's, a reply's) must not keep the frames it passed
    through: a frame that caught an exception and raised another still names the first,
    a reference cycle that holds the frame's buffers (a whole request, a decoded image)
    until Python's cyclic GC runs, which counts objects, not bytes."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc
