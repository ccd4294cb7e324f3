"""A corpus of real-world hostile and awkward image files, built on the spot.

Each :class:`Kind` writes one file and says how bulktag must end it: ``ok`` (tagged) or
``error`` with a reason containing ``reason``. Shared by the decode unit tests and
the real-worker integration test, so both prove the same list.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Limits the integration test gives its worker (BULKTAG_MAX_BYTES / BULKTAG_MAX_PIXELS).
MAX_BYTES = 4 * 1024 * 1024
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Kind:
    """One kind of input: file name, how to build its bytes, and the expected ending."""

    name: str
    filename: str
    build: Callable[[Path], None]
    expect: str  # "ok" or "error"
    reason: str = ""  # substring of the error reason (lower-case)


def _photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (gradients plus noise) that JPEG handles well."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width), y * 255 // max(1, height), (x + y) % 256], -1)
    noisy = base + rng.integers(-20, 20, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _encoded(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(path: Path, side: int = 40_000) -> None:
    """A valid 1-bit PNG of side x side black pixels: ~200 KB on disk, 1.6 gigapixels."""
    row = b"\x00" * (1 + side // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(side // 1000)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_text_bomb(path: Path) -> None:
    """A small PNG whose zTXt chunk inflates to 64 MB of text."""
    png = _encoded(_photo(64, 48), "PNG")
    ztxt = b"Comment\x00\x00" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    iend = png.rindex(b"IEND") - 4
    path.write_bytes(png[:iend] + _png_chunk(b"zTXt", ztxt) + png[iend:])


def _jpeg_header_bomb(path: Path) -> None:
    """A JPEG whose SOF header claims 65500x65500 pixels; tiny, never decodable."""
    data = bytearray(_encoded(_photo(64, 48), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65500, 65500)
    path.write_bytes(bytes(data))


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    _photo().save(path, "JPEG", exif=exif.tobytes())


def _bogus_exif(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    exif[0x010F] = "\x00" * 300  # nonsense maker string
    _photo().save(path, "JPEG", exif=exif.tobytes())


def _gray16(path: Path) -> None:
    ramp = np.linspace(0, 65535, 240 * 320).reshape(240, 320).astype(np.uint16)
    Image.fromarray(ramp).save(path, "PNG")


def _palette_gif(path: Path) -> None:
    _photo().quantize(64).save(path, "GIF")


def _animated_gif(path: Path) -> None:
    frames = [_photo(seed=i).quantize(32) for i in range(3)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _alpha_png(path: Path) -> None:
    img = _photo().convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    img.save(path, "PNG")


def _oversized(path: Path) -> None:
    """A valid JPEG followed by junk, past the byte cap (what a camera RAW+JPEG mixup does)."""
    data = _encoded(_photo(), "JPEG")
    path.write_bytes(data + os.urandom(MAX_BYTES + 1024 - len(data)))


def _writer(data: Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data())


def _saver(img: Callable[[], Image.Image], fmt: str, **kwargs: object) -> Callable[[Path], None]:
    return lambda path: img().save(path, fmt, **kwargs)


def _truncated_jpeg() -> bytes:
    data = _encoded(_photo(), "JPEG")
    return data[: len(data) * 6 // 10]


def _truncated_png() -> bytes:
    data = _encoded(_photo(), "PNG")
    return data[: len(data) // 2]


def _header_only_png() -> bytes:
    return _encoded(_photo(), "PNG")[:33]  # signature + IHDR, no IDAT


def _random_bytes() -> bytes:
    return random.Random(7).randbytes(4096)


_HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body></body></html>\n"
_TEXT = b"This is not a picture. It is a README that someone renamed.\n" * 20
_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>\n'
_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _cmyk() -> Image.Image:
    return _photo().convert("CMYK")


KINDS: tuple[Kind, ...] = (
    Kind("empty file", "empty.jpg", _writer(lambda: b""), "error", "empty"),
    Kind("truncated JPEG", "truncated.jpg", _writer(_truncated_jpeg), "error", "truncated"),
    Kind("truncated PNG", "truncated.png", _writer(_truncated_png), "error", "truncated"),
    Kind("text saved as .jpg", "readme.jpg", _writer(lambda: _TEXT), "error", "text"),
    Kind("HTML saved as .jpg", "404.jpg", _writer(lambda: _HTML), "error", "html"),
    Kind("SVG saved as .png", "vector.png", _writer(lambda: _SVG), "error", "not a recognised"),
    Kind("PDF saved as .jpg", "scan.jpg", _writer(lambda: _PDF), "error", "not a recognised"),
    Kind("random bytes", "noise.jpg", _writer(_random_bytes), "error", "not a recognised"),
    Kind("PNG bomb, 1.6 gigapixels", "bomb.png", _png_bomb, "error", "pixel limit"),
    Kind("JPEG header claiming 65500x65500", "huge.jpg", _jpeg_header_bomb, "error", "pixel"),
    Kind("PNG zTXt text bomb", "textbomb.png", _png_text_bomb, "error", "too large"),
    Kind("header-only PNG", "header.png", _writer(_header_only_png), "error", "png"),
    Kind(
        "1x60000 sliver",
        "sliver.png",
        _saver(lambda: Image.new("RGB", (1, 60000)), "PNG"),
        "error",
        "aspect ratio",
    ),
    Kind("file over the byte cap", "oversized.jpg", _oversized, "error", "byte limit"),
    Kind("CMYK JPEG", "cmyk.jpg", _saver(_cmyk, "JPEG"), "ok"),
    Kind("16-bit greyscale PNG", "gray16.png", _gray16, "ok"),
    Kind("palette GIF", "palette.gif", _palette_gif, "ok"),
    Kind("animated GIF", "animated.gif", _animated_gif, "ok"),
    Kind("alpha PNG", "alpha.png", _alpha_png, "ok"),
    Kind("WebP", "photo.webp", _saver(_photo, "WEBP", quality=80), "ok"),
    Kind("TIFF (LZW)", "photo.tiff", _saver(_photo, "TIFF", compression="tiff_lzw"), "ok"),
    Kind("BMP", "photo.bmp", _saver(_photo, "BMP"), "ok"),
    Kind("EXIF-rotated JPEG", "rotated.jpg", _exif_rotated, "ok"),
    Kind("JPEG with a bogus EXIF block", "bogus_exif.jpg", _bogus_exif, "ok"),
    Kind("1x1 PNG", "pixel.png", _saver(lambda: Image.new("RGB", (1, 1), "red"), "PNG"), "ok"),
    Kind("4000x50 JPEG", "banner.jpg", _saver(lambda: _photo(4000, 50), "JPEG"), "ok"),
    Kind("PNG named .jpg", "actually_png.jpg", _saver(_photo, "PNG"), "ok"),
    Kind(
        "JPEG with trailing junk",
        "trailing.jpg",
        _writer(lambda: _encoded(_photo(), "JPEG") + b"\x00junk" * 100),
        "ok",
    ),
)


def build_hostile_corpus(folder: Path) -> dict[str, Kind]:
    """Write every kind into ``folder``; return ``{absolute path: kind}``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind in KINDS:
        path = folder / kind.filename
        kind.build(path)
        written[str(path.absolute())] = kind
    return written
