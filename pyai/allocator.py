"""glibc malloc settings for the long-lived plugin process.

Why: glibc serves a request of at least its mmap threshold (128 KiB at start) with a
private mmap that goes back to the system on free, but after such a block is freed
it raises the threshold to that block's size (up to 32 MiB on 64-bit). pyai's frames
are such blocks: a 720p frame's base64 request, its decoded bytes, its pixels. After
one large frame or a bounded hostile one, later frames of that size come from the
heap arenas instead (one per thread that allocated: the function channels, the
engine's workers, the decoders), where they interleave with long-lived objects and
the freed space cannot go back to the system: the process's RSS rises and falls by
megabytes with the order of its inputs (issue #20's hour: 163-171 MB).
Fixing the threshold (any ``M_MMAP_THRESHOLD`` setting turns the dynamic adjustment
off) keeps every large buffer an mmap of its own that is returned when freed.

Only glibc has these knobs; with any other C library (musl, macOS, Windows) every
function here does nothing and says so by returning False.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any, Optional

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
OPTIONS = {"trim_threshold": -1, "top_pad": -2, "mmap_threshold": -3, "mmap_max": -4, "arena_max": -8}
_UNSET: Any = object()
_libc: Any = _UNSET


def glibc() -> Optional[Any]:
    """The running glibc as a ctypes library, or None with another C library."""
    global _libc
    if _libc is _UNSET:
        _libc = None
        try:
            os.confstr("CS_GNU_LIBC_VERSION")  # glibc only: ValueError/OSError elsewhere
            lib = ctypes.CDLL(None)
            lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc = lib
        except (AttributeError, ValueError, OSError):
            pass
    return _libc


def set_option(name: str, value: int) -> bool:
    """``mallopt(OPTIONS[name], value)``; True when glibc took it."""
    lib = glibc()
    return bool(lib is not None and lib.mallopt(OPTIONS[name], int(value)) == 1)


def trim() -> bool:
    """``malloc_trim(0)``: give the arenas' free pages back; True when memory was released."""
    lib = glibc()
    return bool(lib is not None and lib.malloc_trim(0))


def fix_mmap_threshold(kib: int) -> bool:
    """Fix glibc's mmap threshold at ``kib`` KiB (turning off its dynamic growth);
    0 leaves malloc as it is. True when applied."""
    if kib <= 0:
        return False
    applied = set_option("mmap_threshold", kib * 1024)
    if applied:
        log.info("pyai: glibc mmap threshold fixed at %s KiB", kib)
    else:
        log.debug("pyai: no glibc mallopt here; malloc_mmap_threshold_kb=%s not applied", kib)
    return applied
