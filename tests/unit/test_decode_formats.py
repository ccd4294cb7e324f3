"""Decoding HEIC, AVIF and camera RAW (DNG made from a photo's Bayer mosaic)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import tifffile
from PIL import Image
from prometheus_client import REGISTRY

from tasks.decode import decode_image
from tasks.errors import DecodeError, TooLarge
from tasks.preprocess import FAST_DRAFT_MIN, decode_crop
from tasks.raw import RAW_PATHS
from tests.format_fixtures import avif_bytes, dng_bytes, heic_bytes, photo

MAX = 64_000_000


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return photo("coffee", (768, 512))


class RawPaths:
    """How many RAWs took each decode path since the test began (the worker's metric)."""

    def __init__(self) -> None:
        self.start = {path: self._count(path) for path in RAW_PATHS}

    @staticmethod
    def _count(path: str) -> float:
        value = REGISTRY.get_sample_value("bulktag_raw_decodes_total", {"path": path})
        return value or 0.0

    def taken(self) -> dict[str, int]:
        counts = {path: int(self._count(path) - self.start[path]) for path in RAW_PATHS}
        return {path: n for path, n in counts.items() if n}


@pytest.fixture
def raw_paths() -> RawPaths:
    import tasks.instruments  # noqa: F401  (registers the counter before the first read)

    return RawPaths()


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


@pytest.mark.parametrize("encode", [heic_bytes, avif_bytes], ids=["heic", "avif"])
def test_heic_and_avif_decode_to_the_photo(picture: Image.Image, encode: object) -> None:
    img = decode_image(encode(picture), MAX)  # type: ignore[operator]
    assert (img.mode, img.size) == ("RGB", picture.size)
    assert mean_abs_diff(img, picture) < 3  # lossy at quality 90, but the same photo


def test_fast_mode_uses_a_heic_thumbnail_only_when_it_is_big_enough(
    picture: Image.Image,
) -> None:
    # A 400x266 thumbnail (short side >= 256) stands in for the 768x512 photo in fast mode
    with_thumb = heic_bytes(picture, thumbnail=400)
    assert decode_image(with_thumb, MAX).size == (768, 512)
    assert decode_image(with_thumb, MAX, draft=FAST_DRAFT_MIN).size == (400, 266)
    # ...a 300x200 one would be upsampled: the full image is decoded instead
    small_thumb = heic_bytes(picture, thumbnail=300)
    assert decode_image(small_thumb, MAX, draft=FAST_DRAFT_MIN).size == (768, 512)
    assert decode_crop(with_thumb, MAX, "fast").shape == (224, 224, 3)


def test_truncated_heic_is_a_decode_error_naming_the_format(picture: Image.Image) -> None:
    data = heic_bytes(picture)
    for cut in (len(data) // 2, 200, 40):
        with pytest.raises(DecodeError) as err:
            decode_image(data[:cut], MAX)
        assert "HEIF" in str(err.value) or "truncated" in str(err.value), cut


@pytest.mark.parametrize("encode", [heic_bytes, avif_bytes], ids=["heic", "avif"])
def test_over_the_pixel_limit_is_refused_before_decoding(
    picture: Image.Image, encode: object
) -> None:
    with pytest.raises(TooLarge, match="768x512 = 393216 pixels, over the 1000-pixel limit"):
        decode_image(encode(picture), 1000)  # type: ignore[operator]


def test_dng_without_preview_is_demosaiced_at_half_size(
    picture: Image.Image, raw_paths: RawPaths
) -> None:
    img = decode_image(dng_bytes(picture), MAX)
    assert raw_paths.taken() == {"demosaic": 1}
    assert (img.mode, img.size) == ("RGB", (384, 256))
    # LibRaw renders the mosaic back into (about) the photo: sRGB, camera white balance
    assert mean_abs_diff(img, picture.resize((384, 256))) < 20


def test_dng_with_a_big_preview_uses_it_and_applies_the_raw_orientation(
    picture: Image.Image, raw_paths: RawPaths
) -> None:
    preview = picture.resize((384, 256))
    # Orientation 6: the camera was turned; the viewer rotates 90 degrees clockwise
    img = decode_image(dng_bytes(picture, preview=preview, orientation=6), MAX)
    assert raw_paths.taken() == {"preview": 1}
    assert img.size == (256, 384)
    upright = preview.transpose(Image.Transpose.ROTATE_270)
    turned_the_wrong_way = preview.transpose(Image.Transpose.ROTATE_90)
    assert mean_abs_diff(img, upright) < 6 < 20 < mean_abs_diff(img, turned_the_wrong_way)
    # The demosaic path turns the image the same way
    demosaiced = decode_image(dng_bytes(picture, orientation=6), MAX)
    assert demosaiced.size == (256, 384)
    assert raw_paths.taken() == {"preview": 1, "demosaic": 1}


def test_a_thumbnail_sized_preview_is_not_used(picture: Image.Image, raw_paths: RawPaths) -> None:
    thumb = picture.resize((160, 107))  # short side < 256: would be upsampled
    img = decode_image(dng_bytes(picture, preview=thumb), MAX)
    assert raw_paths.taken() == {"demosaic": 1} and img.size == (384, 256)


def test_fast_mode_decodes_a_big_raw_preview_at_reduced_scale(
    picture: Image.Image, raw_paths: RawPaths
) -> None:
    data = dng_bytes(picture, preview=picture)  # a full-size 768x512 preview
    assert decode_image(data, MAX).size == (768, 512)
    assert decode_image(data, MAX, draft=FAST_DRAFT_MIN).size == (384, 256)  # DCT 1/2
    assert raw_paths.taken() == {"preview": 2}


def test_unreadable_raw_files_are_decode_errors_never_tiff_thumbnails() -> None:
    # A CR2 header with nothing LibRaw understands after it
    with pytest.raises(DecodeError, match="camera RAW that LibRaw cannot read"):
        decode_image(b"II*\0\x10\0\0\0CR\x02\0" + b"\0" * 400, MAX)
    # A NEF-like TIFF (a small first image, the photo in a SubIFD, no maker data LibRaw
    # knows): Pillow would happily decode its 16x12 first image; LibRaw refuses it
    nef_like = io.BytesIO()
    with tifffile.TiffWriter(nef_like) as tif:
        tif.write(np.zeros((12, 16, 3), np.uint8), subfiletype=1, subifds=1)
        tif.write(np.zeros((64, 96, 3), np.uint8))
    with pytest.raises(DecodeError, match="LibRaw"):
        decode_image(nef_like.getvalue(), MAX)
    # A RAF (Fujifilm) magic number and garbage
    with pytest.raises(DecodeError, match="LibRaw"):
        decode_image(b"FUJIFILMCCD-RAW 0201FF383501" + b"\x01" * 400, MAX)


def test_truncated_dng_without_preview_is_a_decode_error(picture: Image.Image) -> None:
    data = dng_bytes(picture)
    with pytest.raises(DecodeError):
        decode_image(data[:2000], MAX)


def test_raw_sensor_over_the_pixel_limit_is_refused_before_unpacking(
    picture: Image.Image,
) -> None:
    with pytest.raises(TooLarge, match="RAW sensor is 768x512"):
        decode_image(dng_bytes(picture), 100_000)


@pytest.mark.parametrize("kind", ["heic", "avif", "dng", "dng-preview"])
def test_damaged_files_only_ever_end_as_decode_errors(kind: str) -> None:
    """Cut or scribbled-on files: an image or a DecodeError/TooLarge, never another error.

    Anything else would be recorded as an "internal error" (and logged with a
    traceback) instead of the file's reason.
    """
    import random

    img = photo("coffee", (256, 256))
    data = {
        "heic": lambda: heic_bytes(img),
        "avif": lambda: avif_bytes(img),
        "dng": lambda: dng_bytes(img),
        "dng-preview": lambda: dng_bytes(img, preview=img),
    }[kind]()
    rng = random.Random(kind)
    for _ in range(25):
        damaged = bytearray(data)
        if rng.random() < 0.5:
            damaged = damaged[: rng.randrange(8, len(damaged))]
        else:
            for _ in range(rng.randrange(1, 20)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        with contextlib.suppress(DecodeError, TooLarge):
            decode_image(bytes(damaged), MAX)
