"""Decode bytes into an RGB image and preprocess it exactly as the reference does.

The reference is torchvision's ``ResNet18_Weights.IMAGENET1K_V1.transforms()`` applied
to ``ImageOps.exif_transpose(Image.open(f)).convert("RGB")``; we call that preset
itself rather than re-implementing it, so agreement is by construction.
"""

from __future__ import annotations

import io
import re
import warnings
from functools import cache
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from tasks.errors import DecodeError, TooLarge
from tasks.formats import HEAD_BYTES, is_raw, missing_decoder, register_openers, sniff
from tasks.raw import decode_raw

if TYPE_CHECKING:
    from torch import nn


def decode_image(data: bytes, max_pixels: int, *, draft: int | None = None) -> Image.Image:
    """Decode ``data`` to an RGB PIL image, EXIF orientation applied.

    Pillow decodes what it knows, HEIF/HEIC through pillow-heif's opener and AVIF
    through its own plugin; a camera RAW (recognised by content, ``tasks.formats``)
    goes to LibRaw instead (``tasks.raw``: embedded preview or half-size demosaic).
    The pixels are the reference's (``exif_transpose(img).convert("RGB")``) without its
    two full-size copies: ``exif_transpose`` copies even an upright image and
    ``convert`` copies an RGB one, which on a 12 MP photo costs more than the decode.

    Args:
        data: the file's bytes.
        max_pixels: refuse images with more pixels than this (before decoding them).
        draft: if set, let a JPEG decode at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling),
            or a HEIC use its embedded thumbnail, while both sides stay at least
            ``draft`` pixels: much cheaper for big photos, but not the reference's
            pixels (the ``fast`` decode mode only).

    Raises:
        DecodeError: empty, not an image, truncated or corrupt.
        TooLarge: more than ``max_pixels`` pixels (checked before decoding pixels).
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    kind = sniff(data[:HEAD_BYTES])
    if kind in ("raw", "tiff") and is_raw(data):
        return decode_raw(data, max_pixels, draft=draft)
    register_openers()
    if kind in ("heif", "avif") and (missing := missing_decoder(kind)):
        raise DecodeError(missing)
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise TooLarge(
                f"image is {width}x{height} = {width * height} pixels, over the "
                f"{max_pixels}-pixel limit (possible decompression bomb)"
            )
        if draft and img.format in _DRAFT_FORMATS:
            img.draft(img.mode, (draft, draft))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # a no-op, not a copy, when upright
        oriented: Image.Image = img
        if oriented.mode.startswith("I;16"):
            oriented = _sixteen_to_eight_bits(oriented)
        if oriented.mode == "P" and "transparency" in oriented.info:
            # Pillow warns converting such palettes straight to RGB
            oriented = oriented.convert("RGBA")
        return oriented if oriented.mode == "RGB" else oriented.convert("RGB")
    except TooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses at open, before our own check: keep one wording for both.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{found.group(1)} pixels, " if found else ""
        raise TooLarge(
            f"image is {count}over the {max_pixels}-pixel limit (possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise DecodeError(f"not a recognised image format ({_sniff(data)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as exc:
        # RuntimeError: Pillow's AVIF plugin reports a damaged file that way.
        raise DecodeError(f"corrupt or truncated image: {str(exc).strip()}") from None


# Formats whose draft() decodes fewer pixels: libjpeg DCT scaling, HEIF thumbnails.
_DRAFT_FORMATS = ("JPEG", "HEIF")


def configure_limits(max_pixels: int) -> None:
    """Align Pillow's process-wide bomb limit with ours (call once per worker process).

    Pillow warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that; our own check
    in ``decode_image`` is the gate, so the advisory warning is silenced here, once,
    rather than with a thread-unsafe ``catch_warnings`` per image.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _sixteen_to_eight_bits(img: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (v >> 8).

    Pillow's own ``convert`` clips 16-bit values at 255, which turns almost every
    16-bit photo into a white square and would tag it as one. This is the one place
    bulktag deliberately differs from the plain ``convert("RGB")`` reference.
    """
    import numpy as np

    return Image.fromarray((np.asarray(img) >> 8).astype(np.uint8), "L")


# The short side IMAGENET1K_V1.transforms() resizes to (a unit test pins it to the preset).
PRESET_RESIZE = 256


def check_resize_budget(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse images whose *preprocessing* would exceed ``max_pixels``.

    The preset resizes the short side to 256 before cropping, on the full image: a
    1x60000 sliver (a 300-byte PNG) would become 256x15,360,000 and take ~16 GB and
    over a minute of one core. The pixel limit must hold after that resize too.

    Raises:
        TooLarge: the resized image would be over the limit.
    """
    short, long = sorted(size)
    target = PRESET_RESIZE
    resized_long = -(-target * long // max(short, 1))
    if target * resized_long > max_pixels:
        raise TooLarge(
            f"extreme aspect ratio: {size[0]}x{size[1]} would be resized to "
            f"{target}x{resized_long} pixels, over the {max_pixels}-pixel limit"
        )


# Magic numbers of formats Pillow reads, to name a file that is one but will not open.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_FAMILY_NAMES = {"heif": "HEIF/HEIC", "avif": "AVIF", "webp": "WebP", "bmp": "BMP"}


def _sniff(data: bytes) -> str:
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return f"starts like a {name} file but holds no readable image (truncated?)"
    family = _FAMILY_NAMES.get(sniff(data[:HEAD_BYTES]) or "")
    if family:
        article = "an" if family[0] in "AEIOU" else "a"
        return f"starts like {article} {family} file but holds no readable image (truncated?)"
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "looks like HTML"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:256]):
        return "looks like text"
    return f"first bytes {data[:8].hex()}"


@cache
def reference_transform() -> nn.Module:
    """torchvision's eval preset for IMAGENET1K_V1: resize 256, crop 224, normalise."""
    from torchvision.models import ResNet18_Weights

    preset: nn.Module = ResNet18_Weights.IMAGENET1K_V1.transforms()
    return preset
