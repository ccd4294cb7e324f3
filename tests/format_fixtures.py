"""HEIC, AVIF and DNG files made from the packaged photos, for tests and ``bench.formats``.

HEIC is written by pillow-heif (libheif + x265), AVIF by Pillow's own plugin, and the
DNG by tifffile from a Bayer mosaic of a photo: linear-light RGGB samples at 12 bits, a
ColorMatrix1 that makes the "camera" linear sRGB, and optionally a JPEG preview in IFD0
with the sensor data in a SubIFD, as cameras and Adobe's converter write them. LibRaw
reads all of it (the tests check that it does).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

# XYZ (D65) -> linear sRGB: as DNG's ColorMatrix1 it declares the sensor to be sRGB.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
WHITE_LEVEL = 4095  # a 12-bit sensor


def photo(name: str = "coffee", size: tuple[int, int] | None = None) -> Image.Image:
    """A packaged photo (``skimage.data``) as RGB, optionally resized."""
    import skimage.data

    img = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
    return img.resize(size, Image.Resampling.LANCZOS) if size else img


def heic_bytes(img: Image.Image, quality: int = 90, *, thumbnail: int | None = None) -> bytes:
    """``img`` as HEIC (HEVC in HEIF) by pillow-heif.

    ``thumbnail``: embed a thumbnail whose long side is this many pixels, as phones do.
    x265's ``ultrafast`` preset: a standard HEIC in an eighth of the default's time
    (0.75 s instead of 5.9 s for 768x512 on the 2-core dev machine).
    """
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(img).save(
        out,
        quality=quality,
        thumbnails=[thumbnail] if thumbnail else [],
        enc_params={"preset": "ultrafast"},
    )
    return out.getvalue()


def avif_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """``img`` as AVIF, by Pillow's own plugin."""
    out = io.BytesIO()
    img.save(out, "AVIF", quality=quality)
    return out.getvalue()


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def bayer_mosaic(img: Image.Image) -> np.ndarray:
    """RGGB samples of ``img`` in linear light, 12-bit, even width and height."""
    srgb = np.asarray(img, dtype=np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    height, width = (d - d % 2 for d in linear.shape[:2])
    linear = linear[:height, :width] * WHITE_LEVEL
    mosaic = np.empty((height, width), np.uint16)
    mosaic[0::2, 0::2] = linear[0::2, 0::2, 0]  # R
    mosaic[0::2, 1::2] = linear[0::2, 1::2, 1]  # G
    mosaic[1::2, 0::2] = linear[1::2, 0::2, 1]  # G
    mosaic[1::2, 1::2] = linear[1::2, 1::2, 2]  # B
    return mosaic


def dng_bytes(
    img: Image.Image, *, preview: Image.Image | None = None, orientation: int = 1
) -> bytes:
    """A DNG 1.4 of ``img``'s Bayer mosaic, with ``preview`` as an embedded JPEG if given.

    ``orientation`` is the TIFF Orientation tag (6: rotate 90 degrees clockwise to view).
    """
    import tifffile

    def srational(values: tuple[float, ...], den: int = 10000) -> list[int]:
        return [v for x in values for v in (round(x * den), den)]

    file_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "bulktag test camera", True),  # UniqueCameraModel
        (50721, "2i", 9, srational(_XYZ_TO_SRGB), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),
        (271, "s", 0, "bulktag", True),  # Make
        (272, "s", 0, "test camera", True),  # Model
    ]
    sensor_tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50714, "H", 1, 0, True),  # BlackLevel
        (50717, "H", 1, WHITE_LEVEL, True),  # WhiteLevel
    ]
    mosaic = bayer_mosaic(img)
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tif:
        if preview is None:
            tif.write(mosaic, photometric=32803, subfiletype=0, extratags=file_tags + sensor_tags)
        else:
            width, height = preview.size
            with _precompressed_jpeg():
                tif.write(
                    iter([jpeg_bytes(preview.convert("RGB"))]),
                    shape=(height, width, 3),
                    dtype="uint8",
                    photometric="ycbcr",
                    compression=7,  # JPEG
                    subfiletype=1,  # reduced-resolution image
                    subifds=1,
                    rowsperstrip=height,
                    extratags=file_tags,
                )
            tif.write(mosaic, photometric=32803, subfiletype=0, extratags=sensor_tags)
    return out.getvalue()


@contextmanager
def _precompressed_jpeg() -> Iterator[None]:
    """Let tifffile write JPEG strips we encoded ourselves without the imagecodecs package.

    tifffile looks the compressor up even for already-encoded strips (and never calls
    it for them); a placeholder that fails loudly if it were called stands in.
    """
    from tifffile import TIFF

    def never(*_: object, **__: object) -> bytes:
        raise AssertionError("tifffile tried to JPEG-encode a pre-encoded strip")

    codecs = TIFF.COMPRESSORS._codecs  # type: ignore[attr-defined]
    had = 7 in codecs
    saved = codecs.get(7)
    codecs[7] = never
    try:
        yield
    finally:
        if had:
            codecs[7] = saved
        else:
            codecs.pop(7, None)
