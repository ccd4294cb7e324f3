"""Decode bytes into an RGB image and preprocess it exactly as the reference does.

The reference is torchvision's ``ResNet18_Weights.IMAGENET1K_V1.transforms()`` applied
to ``ImageOps.exif_transpose(Image.open(f)).convert("RGB")``; we call that preset
itself rather than re-implementing it, so agreement is by construction.
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from tasks.errors import DecodeError, TooLarge

if TYPE_CHECKING:
    import torch
    from torch import nn


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` to an RGB PIL image, EXIF orientation applied.

    Raises:
        DecodeError: empty, not an image, truncated or corrupt.
        TooLarge: more than ``max_pixels`` pixels (checked before decoding pixels).
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise TooLarge(
                f"image is {width}x{height} = {width * height} pixels, over the "
                f"{max_pixels}-pixel limit (possible decompression bomb)"
            )
        img.load()
        oriented: Image.Image = ImageOps.exif_transpose(img)
        if oriented.mode == "P" and "transparency" in oriented.info:
            # Pillow warns converting such palettes straight to RGB
            oriented = oriented.convert("RGBA")
        return oriented.convert("RGB")
    except TooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        raise DecodeError(f"not a recognised image format ({_sniff(data)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated image: {exc}") from None


def configure_limits(max_pixels: int) -> None:
    """Align Pillow's process-wide bomb limit with ours (call once per worker process).

    Pillow warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that; our own check
    in ``decode_image`` is the gate, so the advisory warning is silenced here, once,
    rather than with a thread-unsafe ``catch_warnings`` per image.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _sniff(data: bytes) -> str:
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

    return ResNet18_Weights.IMAGENET1K_V1.transforms()


def preprocess(img: Image.Image) -> torch.Tensor:
    """A 3x224x224 float tensor, exactly the reference preprocessing."""
    return reference_transform()(img)


def decode_and_preprocess(data: bytes, max_pixels: int) -> torch.Tensor:
    return preprocess(decode_image(data, max_pixels))
