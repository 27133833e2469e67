"""Before any pixel: an encoded image's format, size and decode cost, and the limits.

:func:`inspect` walks the file's structure (JPEG markers, PNG chunks with their
CRCs, GIF blocks up to the first image, the BMP and WebP headers) and yields a
:class:`Header`: the size, what drives the decode cost, and an estimate of that
cost. :func:`check` refuses, with a one-line reason, an image that is too large
(``max_pixels``), would take too long to decode (``max_decode_ms``: the eKuiper
host gives up after 5 s), is truncated, or is structurally broken. The policy is
strict and the same for every format: a frame whose data is incomplete (JPEG
without its end, PNG without IEND or with a bad chunk CRC, GIF without its
trailer, WebP shorter than its RIFF size) is refused even where a decoder could
paint part of it, since a partial picture gives a wrong label and usually means
a transport problem.

The cost model (:data:`COST`) was measured on the reference machine, a 2-core
x86-64 server (see the table and tests/test_hostile.py); on a slower CPU lower
``max_decode_ms`` by the ratio of the speeds.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Dict

from .errors import BadInput

JPEG_MAGIC = b"\xff\xd8\xff"
# Each format's name in messages.
FORMAT_NAME = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WebP"}


# Structures that a decoder walks one by one in Python (Pillow parses PNG
# chunks, GIF blocks and JPEG markers in Python): a file made of a million
# tiny ones is a CPU bomb however few pixels it has. Real files have a few
# dozen (a 16 MiB PNG written with 8 KiB IDATs has 2,000 chunks).
MAX_PNG_CHUNKS = 50_000
MAX_GIF_BLOCKS = 100_000  # extension sub-blocks before the first image
MAX_JPEG_SEGMENTS = 10_000  # marker segments before the first scan
# Longest side accepted (JPEG's own limit; the resize takes at most 65536).
MAX_SIDE = 65535

# Estimated decode cost on the reference machine (2-core x86-64 VM, Pillow 13,
# simplejpeg 1.9, libwebp 1.6): milliseconds per megapixel (``*_mpx``), per
# MiB of encoded data (``*_mib``) and per structure. Each constant is at or
# above the worst case measured for it, and measurements on this shared box
# varied up to 3x with load from other jobs: the dearest images the default
# limits (50 Mpx, 2000 ms) accept decode in 0.5-1.2 s when it is quiet, so a
# loaded box still answers well inside the host's 5 s
# (tests/test_hostile.py::test_worst_accepted_image_of_each_kind_decodes_in_time).
COST: Dict[str, float] = {
    # JPEG, one scan (baseline): DCT-domain downscale makes pixels cheap, the
    # entropy decoding of the data is the rest (worst: noise at quality 30).
    "jpeg_mpx": 2.0,
    "jpeg_mib": 16.0,
    # Progressive / multi-scan JPEG: the whole coefficient buffer is kept and
    # every scan walks one component's blocks again (a refinement scan over a
    # 50 Mpx 4:4:4 component costs 27 ms).
    "jpeg_multiscan_mpx": 6.0,
    "jpeg_scan_mpx": 0.6,
    "jpeg_multiscan_mib": 50.0,
    "jpeg_arithmetic_mib": 110.0,
    # PNG: inflate + unfilter + unpack, proportional to the raw sample bytes;
    # Adam7 interlacing costs 40% more; Pillow handles each chunk in Python.
    "png_mpx": 8.0,
    "png_raw_mib_per_mpx": 10.0,  # per byte of raw samples per pixel
    "png_interlace_factor": 1.4,
    "png_grey16_mpx": 12.0,  # 16-bit grey is rescaled with numpy, not by Pillow
    "png_chunk": 0.004,
    # GIF: LZW in C; the blocks before the first image are parsed in Python.
    "gif_mpx": 10.0,
    "gif_mib": 8.0,
    "gif_block": 0.0005,
    # BMP: raw rows are a copy; RLE is decoded by Pillow in pure Python,
    # pixel by pixel for RLE4 and for end-of-line padding.
    "bmp_mpx": 8.0,
    "bmp_rle_mpx": 220.0,
    "bmp_rle_mib": 280.0,
    # WebP (libwebp decodes at full size; alpha is a second plane).
    "webp_lossy_mpx": 16.0,
    "webp_lossless_mpx": 22.0,
    "webp_alpha_mpx": 13.0,
    "webp_mib": 75.0,
}


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 50_000_000
    max_decode_ms: float = 2000.0


@dataclass(frozen=True)
class Header:
    """What :func:`inspect` learnt from the file's structure, before decoding."""

    kind: str  # jpeg, png, gif, bmp, webp
    width: int
    height: int
    detail: str  # what drives the cost, for messages: "progressive JPEG, 10 scans"
    cost_ms: float  # estimated decode time on the reference machine
    truncated: str = ""  # a reason to refuse, reported after the size checks

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff(data: bytes | memoryview) -> str:
    head = bytes(data[:12])
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"GIF87a") or head.startswith(b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def inspect(data: bytes | memoryview) -> Header:
    """Walk the file's structure (no pixel decoding) -> size and estimated cost.

    Raises BadInput for an unknown format, a truncated file or a broken structure.
    """
    kind = sniff(data)
    if kind == "unknown":
        raise BadInput("not an image: unrecognised format (expected JPEG, PNG, BMP, WebP or GIF)")
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        return _INSPECTORS[kind](data)
    except (struct.error, IndexError):
        # A fixed-size field read past the end of the data.
        raise BadInput(f"truncated {FORMAT_NAME[kind]}: the header is incomplete") from None


def check(header: Header, limits: Limits) -> None:
    """Refuse an image that is too large or too costly for ``limits``."""
    check_pixels(header.width, header.height, limits)
    if header.cost_ms > limits.max_decode_ms:
        raise BadInput(
            f"image too costly to decode: {header.detail} {header.width}x{header.height} would take about "
            f"{header.cost_ms:.0f} ms > limit {limits.max_decode_ms:.0f} ms"
        )
    if header.truncated:
        raise BadInput(header.truncated)


def check_pixels(width: int, height: int, limits: Limits) -> None:
    """Refuse a size over ``limits`` (also asked of Pillow's own idea of the size)."""
    if width <= 0 or height <= 0:
        raise BadInput(f"not an image: header says {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise BadInput(f"image too large: {width}x{height}, a side longer than {MAX_SIDE} pixels")
    if width * height > limits.max_pixels:
        raise BadInput(
            f"image too large: {width}x{height} = {width * height} pixels > limit {limits.max_pixels}"
        )


# -- structure walks ---------------------------------------------------------------------

_SOF_NAMES = {
    0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless",
    0xC5: "hierarchical", 0xC6: "hierarchical", 0xC7: "hierarchical",
    0xC9: "arithmetic", 0xCA: "arithmetic progressive", 0xCB: "lossless",
    0xCD: "hierarchical", 0xCE: "hierarchical", 0xCF: "hierarchical",
}


def _inspect_jpeg(data: bytes) -> Header:
    n = len(data)
    pos = end = 2
    segments = 0
    sof = None
    first_scan_components = 0
    truncated = ""
    while True:
        if pos >= n:
            truncated = "corrupt JPEG: truncated before the image data"
            break
        if data[pos] != 0xFF:
            raise BadInput(f"corrupt JPEG: no marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            truncated = "corrupt JPEG: truncated before the image data"
            break
        marker = data[pos]
        pos += 1
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise BadInput(f"corrupt JPEG: more than {MAX_JPEG_SEGMENTS} segments before the image data")
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker == 0xD8:
            raise BadInput("corrupt JPEG: two start-of-image markers")
        if marker == 0xD9:
            raise BadInput("corrupt JPEG: ends before any image data")
        if marker == 0x00:
            raise BadInput(f"corrupt JPEG: no marker at byte {pos - 2}")
        if pos + 2 > n:
            truncated = "corrupt JPEG: truncated inside a header segment"
            break
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise BadInput(f"corrupt JPEG: segment length {length}")
        end = pos + length
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if sof is not None:
                raise BadInput("corrupt JPEG: two frame headers")
            if length < 8:
                raise BadInput("corrupt JPEG: frame header too short")
            if pos + 7 > n:
                raise BadInput("corrupt JPEG: truncated inside the frame header")
            precision, height, width, ncomp = struct.unpack_from(">BHHB", data, pos + 2)
            sof = (marker, precision, height, width, ncomp)
        if end > n:
            truncated = "corrupt JPEG: truncated inside a header segment"
            break
        if marker == 0xDA:
            first_scan_components = data[pos + 2] if pos + 2 < n else 0
            break
        pos = end
    if sof is None:
        raise BadInput(truncated or "corrupt JPEG: no frame header before the image data")
    marker, precision, height, width, ncomp = sof
    kind = _SOF_NAMES.get(marker, "unknown")
    if kind in ("lossless", "hierarchical"):
        raise BadInput(f"unsupported JPEG: {kind} coding")
    if precision != 8:
        raise BadInput(f"unsupported JPEG: {precision}-bit samples (only 8-bit)")
    if height == 0:
        raise BadInput("unsupported JPEG: height defined after the first scan (DNL)")
    if width == 0:
        raise BadInput("not an image: header says width 0")
    if marker in (0xC0, 0xC1) and not truncated and first_scan_components == ncomp:
        # Sequential with every component in the first scan: libjpeg decodes that
        # one scan and refuses another (strict mode), so skip counting (0.1 ms
        # over a 100 KB frame, on every call).
        scans = 1
    else:
        # Every scan starts with an SOS marker (FF DA never occurs inside entropy
        # data), so this is an upper bound of the scans libjpeg will walk.
        scans = 1 + data.count(b"\xff\xda", min(end, n))
    mpx = width * height / 1e6
    mib = n / 2**20
    arithmetic = marker in (0xC9, 0xCA)
    if marker in (0xC2, 0xCA) or scans > 1:
        per_mib = COST["jpeg_arithmetic_mib"] if arithmetic else COST["jpeg_multiscan_mib"]
        cost = mpx * (COST["jpeg_multiscan_mpx"] + COST["jpeg_scan_mpx"] * scans) + mib * per_mib
        detail = f"{kind} JPEG, {scans} scans"
    else:
        per_mib = COST["jpeg_arithmetic_mib"] if arithmetic else COST["jpeg_mib"]
        cost = mpx * COST["jpeg_mpx"] + mib * per_mib
        detail = f"{kind} JPEG"
    return Header("jpeg", width, height, detail, cost, truncated)


# color type -> (name, channels, allowed bit depths)
_PNG_TYPES = {
    0: ("grey", 1, (1, 2, 4, 8, 16)),
    2: ("RGB", 3, (8, 16)),
    3: ("palette", 1, (1, 2, 4, 8)),
    4: ("grey+alpha", 2, (8, 16)),
    6: ("RGBA", 4, (8, 16)),
}


def _inspect_png(data: bytes) -> Header:
    n = len(data)
    view = memoryview(data)
    pos = 8
    chunks = 0
    ihdr = None
    truncated = ""
    while True:
        if pos + 8 > n:
            truncated = "truncated PNG: ends before the IEND chunk"
            break
        length, ctype = struct.unpack_from(">I4s", data, pos)
        name = ctype.decode("latin-1")
        if length > 0x7FFFFFFF:
            raise BadInput(f"corrupt PNG: chunk length {length}")
        end = pos + 12 + length
        if end > n:
            truncated = f"truncated PNG: ends inside the {name!r} chunk"
            if chunks == 0 and ctype == b"IHDR" and pos + 21 <= n:
                ihdr = struct.unpack_from(">IIBBBBB", data, pos + 8)
            break
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise BadInput(f"corrupt PNG: more than {MAX_PNG_CHUNKS} chunks")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4:end - 4]) != crc:
            raise BadInput(f"corrupt PNG: bad CRC in the {name!r} chunk")
        if chunks == 1:
            if ctype != b"IHDR" or length != 13:
                raise BadInput("corrupt PNG: does not start with an IHDR chunk")
            ihdr = struct.unpack_from(">IIBBBBB", data, pos + 8)
        elif ctype == b"IEND":
            break
        pos = end
    if ihdr is None:
        raise BadInput(truncated or "corrupt PNG: no IHDR chunk")
    width, height, depth, color, _compression, _filter, interlace = ihdr
    if width > 0x7FFFFFFF or height > 0x7FFFFFFF:
        raise BadInput(f"corrupt PNG: header says {width}x{height}")
    if color not in _PNG_TYPES or depth not in _PNG_TYPES[color][2]:
        raise BadInput(f"corrupt PNG: bit depth {depth} with colour type {color}")
    if interlace not in (0, 1):
        raise BadInput(f"corrupt PNG: interlace method {interlace}")
    cname, channels, _ = _PNG_TYPES[color]
    bytes_per_px = channels * depth / 8
    mpx = width * height / 1e6
    cost = mpx * (COST["png_mpx"] + COST["png_raw_mib_per_mpx"] * bytes_per_px)
    if color == 0 and depth == 16:
        cost += mpx * COST["png_grey16_mpx"]
    if interlace:
        cost *= COST["png_interlace_factor"]
    cost += chunks * COST["png_chunk"]
    detail = f"{depth}-bit {cname} {'interlaced ' if interlace else ''}PNG"
    return Header("png", width, height, detail, cost, truncated)


def _inspect_gif(data: bytes) -> Header:
    n = len(data)
    screen_w, screen_h, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)
    blocks = 0
    left = top = frame_w = frame_h = 0
    truncated = ""
    while not truncated:
        if pos >= n:
            truncated = "truncated GIF: ends before the first image"
            break
        intro = data[pos]
        if intro == 0x21:  # extension: label, then sub-blocks up to an empty one
            pos += 2
            while True:
                if pos >= n:
                    truncated = "truncated GIF: ends inside an extension block"
                    break
                size = data[pos]
                pos += 1 + size
                blocks += 1
                if blocks > MAX_GIF_BLOCKS:
                    raise BadInput(f"corrupt GIF: more than {MAX_GIF_BLOCKS} blocks before the first image")
                if size == 0:
                    break
        elif intro == 0x2C:  # image descriptor
            if pos + 10 > n:
                truncated = "truncated GIF: ends inside the image descriptor"
                break
            left, top, frame_w, frame_h, _ = struct.unpack_from("<HHHHB", data, pos + 1)
            break
        elif intro == 0x3B:
            raise BadInput("not an image: GIF without any frame")
        else:
            raise BadInput(f"corrupt GIF: unexpected byte 0x{intro:02x} at {pos}")
    if not truncated and data[-1] != 0x3B:
        truncated = "truncated GIF: the file does not end with the GIF trailer"
    # Pillow grows the canvas to hold the first frame.
    width, height = max(screen_w, left + frame_w), max(screen_h, top + frame_h)
    cost = width * height / 1e6 * COST["gif_mpx"] + n / 2**20 * COST["gif_mib"] + blocks * COST["gif_block"]
    return Header("gif", width, height, "GIF", cost, truncated)


_BMP_COMPRESSION = {0: "", 1: "RLE8 ", 2: "RLE4 ", 3: "", 6: ""}


def _inspect_bmp(data: bytes) -> Header:
    n = len(data)
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # OS/2 1.x
        width, height, _planes, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif dib in (16, 40, 52, 56, 64, 108, 124):
        width, height, _planes, bits = struct.unpack_from("<iiHH", data, 18)
        compression = struct.unpack_from("<I", data, 30)[0] if dib >= 40 else 0
    else:
        raise BadInput(f"unsupported BMP: header size {dib}")
    height = abs(height)  # negative: rows stored top-down
    if compression not in _BMP_COMPRESSION:
        raise BadInput(f"unsupported BMP: compression {compression}")
    mpx = width * height / 1e6 if width > 0 else 0.0
    truncated = ""
    (offset,) = struct.unpack_from("<I", data, 10)
    if compression in (1, 2):
        cost = mpx * COST["bmp_rle_mpx"] + n / 2**20 * COST["bmp_rle_mib"]
        # RLE data announces its size and ends with an end-of-bitmap escape.
        (size_image,) = struct.unpack_from("<I", data, 34)
        if offset + size_image > n or (size_image == 0 and not data.endswith(b"\x00\x01")):
            truncated = f"truncated BMP: {n} bytes, the header needs {offset + size_image}"
    else:
        cost = mpx * COST["bmp_mpx"]
        needed = offset + (max(width, 0) * bits + 31) // 32 * 4 * height
        if bits in (1, 4, 8, 16, 24, 32) and needed > n:
            truncated = f"truncated BMP: {n} bytes, the header needs {needed}"
    return Header("bmp", width, height, f"{bits}-bit {_BMP_COMPRESSION[compression]}BMP", cost, truncated)


def _inspect_webp(data: bytes) -> Header:
    n = len(data)
    (riff_size,) = struct.unpack_from("<I", data, 4)
    truncated = ""
    if riff_size + 8 > n:
        truncated = f"truncated WebP: {n} bytes of the {riff_size + 8} the file header announces"
    fourcc, size = struct.unpack_from("<4sI", data, 12)
    p = 20
    if size > n - p and not truncated:
        truncated = "truncated WebP: ends inside the first chunk"
    if fourcc == b"VP8 ":
        if data[p + 3:p + 6] != b"\x9d\x01\x2a":
            raise BadInput("corrupt WebP: bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, p + 6)
        width, height, lossless, alpha, anim = w & 0x3FFF, h & 0x3FFF, False, False, False
    elif fourcc == b"VP8L":
        if data[p] != 0x2F:
            raise BadInput("corrupt WebP: bad VP8L signature")
        (bits,) = struct.unpack_from("<I", data, p + 1)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        lossless, alpha, anim = True, bool(bits >> 28 & 1), False
    elif fourcc == b"VP8X":
        if n < p + 10:
            raise BadInput("truncated WebP: the header is incomplete")
        flags = data[p]
        width = int.from_bytes(data[p + 4:p + 7], "little") + 1
        height = int.from_bytes(data[p + 7:p + 10], "little") + 1
        alpha, anim = bool(flags & 0x10), bool(flags & 0x02)
        # Which coding follows is not in the header: assume the dearer one.
        lossless = True
    else:
        raise BadInput(f"corrupt WebP: unknown first chunk {fourcc!r}")
    mpx = width * height / 1e6
    cost = mpx * (COST["webp_lossless_mpx"] if lossless else COST["webp_lossy_mpx"])
    if alpha:
        cost += mpx * COST["webp_alpha_mpx"]
    cost += n / 2**20 * COST["webp_mib"]
    kind = "extended" if fourcc == b"VP8X" else ("lossless" if lossless else "lossy")
    detail = f"{kind}{' animated' if anim else ''}{' alpha' if alpha else ''} WebP"
    return Header("webp", width, height, detail, cost, truncated)


_INSPECTORS: Dict[str, Callable[[bytes], Header]] = {
    "jpeg": _inspect_jpeg,
    "png": _inspect_png,
    "gif": _inspect_gif,
    "bmp": _inspect_bmp,
    "webp": _inspect_webp,
}

