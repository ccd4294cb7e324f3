"""Camera RAW -> RGB PIL image through LibRaw (``rawpy``): preview or half-size demosaic.

Two paths, and which one a file takes is counted (``bulktag_raw_decodes_total{path=...}``,
``tasks.instruments``), because their pixels differ slightly:

- ``preview``: the camera's embedded JPEG (or bitmap) preview, when its short side is at
  least ``PREVIEW_MIN_SIDE`` (256, the preprocessing's resize target, so a preview is
  never upsampled). No demosaic: a 24 MP NEF costs about a JPEG decode. This is the
  camera's own rendering (its white balance, tone curve and picture style).
- ``demosaic``: LibRaw's half-size demosaic (each 2x2 Bayer block becomes one pixel, no
  interpolation), camera white balance, sRGB, 8 bits: for RAWs with no preview or only
  a thumbnail.

Either way the RAW's orientation (LibRaw's ``flip``) is applied: previews are stored in
sensor orientation, whatever EXIF their own JPEG carries.
"""

from __future__ import annotations

import io
import os
import threading
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Final

from PIL import Image

from tasks.errors import DecodeError, TooLarge

if TYPE_CHECKING:
    import rawpy

PREVIEW_MIN_SIDE: Final = 256
RAW_PATHS: Final = ("preview", "demosaic")
# LibRaw's flip code -> the transpose that puts the image upright.
_FLIP: Final = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,  # 90 degrees counter-clockwise
    6: Image.Transpose.ROTATE_270,  # 90 degrees clockwise
}


def decode_raw(data: bytes, max_pixels: int, *, draft: int | None = None) -> Image.Image:
    """Decode a camera RAW file to an upright RGB image (see the module docstring).

    Args:
        data: the RAW file's bytes.
        max_pixels: refuse a preview or sensor with more pixels (checked before decoding).
        draft: as ``tasks.decode.decode_image``: let a JPEG preview decode at a reduced
            scale while both sides stay at least this many pixels (``--decode fast``).

    Raises:
        DecodeError: LibRaw cannot read the file (corrupt, truncated, unsupported camera),
            or rawpy is not installed.
        TooLarge: the preview or the sensor is over ``max_pixels``.
    """
    try:
        rawpy = load_rawpy()
    except ImportError:
        raise DecodeError("camera RAW needs the rawpy package (pip install rawpy)") from None
    raw = rawpy.RawPy()
    try:
        try:
            raw.open_buffer(io.BytesIO(data))
            flip = raw.sizes.flip
            preview = _preview(raw, max_pixels, draft)
            if preview is not None:
                img, path = preview, "preview"
                if flip in _FLIP:
                    img = img.transpose(_FLIP[flip])
            else:
                img, path = _demosaic(raw, max_pixels), "demosaic"
        except rawpy.LibRawError as exc:
            raise DecodeError(f"camera RAW that LibRaw cannot read: {_why(exc)}") from None
    finally:
        raw.close()
    # Imported here: tasks.instruments pulls in the fetchers (boto3), which a process
    # that only decodes (calibration, the API's thumbnails) does not need.
    from tasks import instruments

    instruments.RAW_DECODES.labels(path=path).inc()
    return img


def _preview(raw: rawpy.RawPy, max_pixels: int, draft: int | None) -> Image.Image | None:
    """The embedded preview as RGB if it is big enough to stand for the photo, else None."""
    rawpy = load_rawpy()

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None  # a damaged preview: the sensor data may still be fine
    data = thumb.data
    if isinstance(data, bytes):  # ThumbFormat.JPEG
        try:
            img = Image.open(io.BytesIO(data))
            if min(img.size) < PREVIEW_MIN_SIDE:
                return None
            _check_pixels(img.size, max_pixels, "embedded preview")
            if draft:
                img.draft("RGB", (draft, draft))
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError):
            return None  # not a readable JPEG: demosaic instead
        # Deliberately no exif_transpose: LibRaw's flip is the RAW's orientation.
        return img if img.mode == "RGB" else img.convert("RGB")
    # ThumbFormat.BITMAP: an (h, w, 3) uint8 array, already unpacked by LibRaw (within
    # its own allocation limits) before its size can be seen; refused here all the same.
    array = data
    height, width = array.shape[:2]
    if min(height, width) < PREVIEW_MIN_SIDE:
        return None
    _check_pixels((width, height), max_pixels, "embedded preview")
    return Image.fromarray(array[:, :, :3]).convert("RGB")


@cache
def load_rawpy() -> ModuleType:
    """Import rawpy with its OpenMP runtime held to one thread (once per process).

    LibRaw runs parts of a demosaic on OpenMP threads, by default one per core, on top of
    the worker's processes x lanes, which already fill the cores. rawpy's wheel bundles
    its own libgomp, which reads ``OMP_NUM_THREADS`` once, when it is loaded; the
    variable is set for that moment only (unless the operator set it) and then restored,
    so torch and child processes never see it. Measured on a 6 MP half-size demosaic:
    95 -> 79 ms CPU, and no idle thread per core left spinning.

    Raises:
        ImportError: rawpy is not installed.
    """
    with _import_lock:
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            import rawpy
        finally:
            if saved is None:
                del os.environ["OMP_NUM_THREADS"]
    return rawpy


_import_lock = threading.Lock()


def _demosaic(raw: rawpy.RawPy, max_pixels: int) -> Image.Image:
    """Half-size demosaic with the camera's white balance, orientation applied by LibRaw."""
    sizes = raw.sizes
    _check_pixels((sizes.raw_width, sizes.raw_height), max_pixels, "sensor")
    raw.unpack()
    rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    return Image.fromarray(rgb, "RGB")


def _check_pixels(size: tuple[int, int], max_pixels: int, what: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise TooLarge(
            f"RAW {what} is {width}x{height} = {width * height} pixels, over the "
            f"{max_pixels}-pixel limit (possible decompression bomb)"
        )


def _why(exc: Exception) -> str:
    """LibRaw's message, which rawpy gives as bytes (``b'Unsupported file format'``)."""
    arg = exc.args[0] if exc.args else ""
    text = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
    return text or type(exc).__name__
