"""Hand-made hostile images, shared by the hostile tests, the fuzz seeds and the soak.

Everything is built in memory with Pillow and a few lines of struct, so the
tests need no binary fixtures (except the gzipped JPEG scan bomb, which
needs a custom scan script that only cjpeg writes).
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import zlib
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REGRESSIONS = HERE / "regressions"


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 96, h: int = 64) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


# -- PNG ------------------------------------------------------------------------------------


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


@functools.lru_cache(maxsize=8)
def png_zero_rows(width: int, height: int, depth: int = 8, color: int = 2, interlace: int = 0,
                  filter_type: int = 4, level: int = 1) -> bytes:
    """A PNG of one random row followed by rows of zero residuals under one filter:
    little data, but the decoder inflates and unfilters every sample, and with
    varied values above and to the left Paeth's branches mispredict (the slowest
    unfiltering there is)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    comp = zlib.compressobj(level)
    first = np.random.default_rng(width ^ height).integers(0, 256, (width * channels * depth + 7) // 8, np.uint8)
    parts = [comp.compress(b"\x00" + first.tobytes())] if not interlace else []
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    for x0, y0, dx, dy in passes if interlace else [(0, 0, 1, 1)]:
        pw, ph = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if pw <= 0 or ph <= 0:
            continue
        row = bytes([filter_type]) + bytes((pw * channels * depth + 7) // 8)
        for _ in range(ph - (0 if interlace else 1)):
            parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    chunks = [png_chunk(b"IHDR", ihdr)]
    if color == 3:
        chunks.append(png_chunk(b"PLTE", bytes(range(256)) * 3))
    chunks += [png_chunk(b"IDAT", b"".join(parts)), png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def fix_png_crcs(data: bytes) -> bytes:
    out = bytearray(data[:8])
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        body = data[pos + 4:pos + 8 + length]
        out += data[pos:pos + 8 + length] + struct.pack(">I", zlib.crc32(body))
        pos += 12 + length
    return bytes(out + data[pos:])


# -- claiming a size in the header ------------------------------------------------------------


def claim_size(data: bytes, kind: str, width: int, height: int) -> bytes:
    """``data`` (a small valid image) with its header patched to say width x height."""
    b = bytearray(data)
    if kind == "jpeg":
        pos = 2
        while True:
            marker, length = b[pos + 1], struct.unpack_from(">H", b, pos + 2)[0]
            if marker in (0xC0, 0xC1, 0xC2):
                struct.pack_into(">HH", b, pos + 5, height, width)
                return bytes(b)
            pos += 2 + length
    if kind == "png":
        struct.pack_into(">II", b, 16, width, height)
        return fix_png_crcs(bytes(b))
    if kind == "gif":
        struct.pack_into("<HH", b, 6, width, height)
        pos = b.index(b",", 13)
        struct.pack_into("<HH", b, pos + 5, width, height)
        return bytes(b)
    if kind == "bmp":
        struct.pack_into("<ii", b, 18, width, height)
        return bytes(b)
    if kind == "webp":
        assert bytes(b[12:16]) == b"VP8X", "claim_size needs an extended (VP8X) WebP"
        b[24:27] = (width - 1).to_bytes(3, "little")
        b[27:30] = (height - 1).to_bytes(3, "little")
        return bytes(b)
    raise ValueError(kind)


def small_vp8x_webp() -> bytes:
    im = gradient(32, 32).convert("RGBA")
    im.putalpha(200)
    data = encode(im, "WEBP", quality=80)
    assert data[12:16] == b"VP8X"
    return data


def oversized_headers(width: int = 60000, height: int = 60000) -> Dict[str, bytes]:
    """A small valid image of each format whose header claims width x height."""
    small = gradient(16, 16)
    return {
        "jpeg": claim_size(encode(small, "JPEG"), "jpeg", width, height),
        "progressive-jpeg": claim_size(encode(small, "JPEG", progressive=True), "jpeg", width, height),
        "png": claim_size(encode(small, "PNG"), "png", width, height),
        "gif": claim_size(encode(small, "GIF"), "gif", width, height),
        "bmp": claim_size(encode(small, "BMP"), "bmp", width, height),
        "webp": claim_size(small_vp8x_webp(), "webp", width, height),
    }


# -- BMP RLE ------------------------------------------------------------------------------------


def bmp_rle(width: int, height: int, body: bytes, rle4: bool = False) -> bytes:
    ncol = 16 if rle4 else 256
    pal = b"".join(bytes((i, i, i, 0)) for i in range(ncol))
    off = 14 + 40 + len(pal)
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 4 if rle4 else 8, 2 if rle4 else 1, len(body),
                      2835, 2835, ncol, 0)
    return b"BM" + struct.pack("<IHHI", off + len(body), 0, 0, off) + dib + pal + body


@functools.lru_cache(maxsize=4)
def bmp_rle_eol_bomb(width: int, height: int) -> bytes:
    """One pixel then end-of-line, every row: Pillow pads each row pixel by pixel in Python."""
    return bmp_rle(width, height, b"\x01\x07\x00\x00" * height + b"\x00\x01")


def bmp_rle_runs(width: int, height: int, rle4: bool = False) -> bytes:
    row = b"".join(bytes((min(255, width - x), 0x57)) for x in range(0, width, 255)) + b"\x00\x00"
    return bmp_rle(width, height, row * height + b"\x00\x01", rle4)


# -- GIF structure bombs ---------------------------------------------------------------------------


def gif_with_extension_blocks(count: int) -> bytes:
    """A small GIF with ``count`` one-byte comment sub-blocks before its image."""
    g = encode(Image.new("P", (16, 16), 1), "GIF")
    pos = 13 + (3 << ((g[10] & 7) + 1) if g[10] & 0x80 else 0)
    return g[:pos] + b"!\xfe" + b"\x01a" * count + b"\x00" + g[pos:]


def png_with_chunks(count: int) -> bytes:
    data = encode(gradient(16, 16), "PNG")
    return data[:33] + png_chunk(b"abCd", b"") * count + data[33:]


@functools.lru_cache(maxsize=1)
def jpeg_scan_bomb() -> bytes:
    """A 50 Mpx flat progressive JPEG with 100 refinement scans (cjpeg -scans):
    300 KB that cost libjpeg 100 passes over 780,000 blocks."""
    return gzip.decompress((CORPUS / "jpeg_scan_bomb_50mpx.jpg.gz").read_bytes())


# -- every format, mode and oddity, small ---------------------------------------------------------


def sample_images() -> Dict[str, bytes]:
    """Small valid images of every format and mode we claim to decode."""
    rgb = gradient()
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    frames = [rgb, rgb.transpose(Image.FLIP_LEFT_RIGHT)]
    agif = io.BytesIO()
    frames[0].save(agif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    awebp = io.BytesIO()
    frames[0].save(awebp, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    pal_t = rgb.quantize(16)
    pal_t.info["transparency"] = 3
    return {
        "jpeg": encode(rgb, "JPEG", quality=85),
        "jpeg-progressive": encode(rgb, "JPEG", quality=85, progressive=True),
        "jpeg-grey": encode(rgb.convert("L"), "JPEG"),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg-444": encode(rgb, "JPEG", subsampling=0),
        "jpeg-1x1": encode(rgb.resize((1, 1)), "JPEG"),
        "png-rgb": encode(rgb, "PNG"),
        "png-rgba": encode(rgba, "PNG"),
        "png-grey": encode(rgb.convert("L"), "PNG"),
        "png-grey16": encode(grey16, "PNG"),
        "png-la": encode(rgb.convert("LA"), "PNG"),
        "png-palette": encode(rgb.quantize(64), "PNG"),
        "png-palette-transparent": encode(pal_t, "PNG"),
        "png-1bit": encode(rgb.convert("1"), "PNG"),
        "png-interlaced": png_zero_rows(40, 30, interlace=1),
        "png-rgb16": png_zero_rows(40, 30, depth=16, color=2),
        "png-1x1": encode(rgb.resize((1, 1)), "PNG"),
        "gif": encode(rgb.quantize(64), "GIF"),
        "gif-animated": agif.getvalue(),
        "gif-1x1": encode(Image.new("P", (1, 1), 0), "GIF"),
        "bmp": encode(rgb, "BMP"),
        "bmp-8bit": encode(rgb.quantize(64), "BMP"),
        "bmp-1bit": encode(rgb.convert("1"), "BMP"),
        "bmp-rle8": bmp_rle_runs(40, 30),
        "bmp-rle4": bmp_rle_runs(40, 30, rle4=True),
        "bmp-1x1": encode(rgb.resize((1, 1)), "BMP"),
        "webp-lossy": encode(rgb, "WEBP", quality=80),
        "webp-lossless": encode(rgb, "WEBP", lossless=True),
        "webp-alpha": encode(rgba, "WEBP", quality=80),
        "webp-animated": awebp.getvalue(),
        "webp-1x1": encode(rgb.resize((1, 1)), "WEBP"),
    }


def seeds(photos: Dict[str, bytes] | None = None) -> List[bytes]:
    out = list(sample_images().values())
    out += list(oversized_headers(3000, 2000).values())
    if photos:
        out += list(photos.values())
    return out


def png_from_array(arr: np.ndarray) -> bytes:
    """A PNG of a (H, W), (H, W, 3) or (H, W, 4) uint8/uint16 array, which Pillow
    cannot write for 16-bit colour."""
    depth = 16 if arr.dtype == np.uint16 else 8
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = arr.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 6))
            + png_chunk(b"IEND", b""))


def corrupt_jpeg_scan(data: bytes, count: int = 200, seed: int = 0) -> bytes:
    """``data`` with ``count`` bytes in the middle of its entropy-coded data changed."""
    b = bytearray(data)
    start = data.index(b"\xff\xda")
    lo, hi = start + (len(data) - start) // 3, start + 2 * (len(data) - start) // 3
    rng = np.random.default_rng(seed)
    for i in rng.integers(lo, hi, count):
        b[i] ^= int(rng.integers(1, 256))
    return bytes(b)
