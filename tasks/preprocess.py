"""The hot path's preprocessing: bytes -> 224x224 uint8 crop -> normalised batch.

The reference (``tasks.decode.preprocess``) resizes the whole image so its short side
is 256, crops the central 224x224, and converts and normalises one float image at a
time. Here the crop comes out as uint8 straight from Pillow and normalisation runs once
per batch, with the reference's arithmetic.

Two decode modes:

- ``exact`` (default): a full decode and ``crop_exact``, bit-identical to the
  reference's pixels at about half its cost on camera photos.
- ``fast``: a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (DCT scaling), never
  below the 256-pixel resize target, then cropped with one ``resize(box=...)``. 3-5x
  cheaper than ``exact``; its agreement with the reference is measured by ``make bench``
  and stated next to its speed in docs/BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from PIL import Image

from tasks.decode import check_resize_budget, decode_image

if TYPE_CHECKING:
    import torch

DECODE_MODES: Final = ("exact", "fast")
RESIZE: Final = 256  # IMAGENET1K_V1 preset: short side resized to 256 ...
CROP: Final = 224  # ... then the central 224x224
MEAN: Final = (0.485, 0.456, 0.406)
STD: Final = (0.229, 0.224, 0.225)
# Fast mode lets libjpeg scale down while both sides stay >= this many pixels, so the
# bilinear resize to 256 still has real pixels to average (never upsamples).
FAST_DRAFT_MIN: Final = RESIZE
# Freed Pillow blocks (16 MB each) kept for reuse: a 12 MP RGB image needs three.
CACHED_BLOCKS: Final = 6
MALLOC_ARENAS: Final = 1
MMAP_THRESHOLD: Final = 32 << 20  # glibc's largest allowed value
TRIM_THRESHOLD: Final = 256 << 20


def configure_allocator(cached_blocks: int = CACHED_BLOCKS) -> None:
    """Let Pillow reuse up to ``cached_blocks`` freed 16 MB image blocks; tune malloc.

    By default Pillow gives every image's memory back to the OS and the next image
    faults it in again page by page; for 12 MP photos that costs as much as a third of
    the decode. Caching a few blocks removes part of it for ``16 MB x cached_blocks``
    of resident memory per process; ``_tune_malloc`` removes the rest.
    """
    Image.core.set_blocks_max(cached_blocks)  # type: ignore[attr-defined]
    _tune_malloc(MALLOC_ARENAS)


def _tune_malloc(arenas: int) -> None:
    """Cap glibc's malloc arenas and keep freed image-sized memory in the process.

    - Arenas (``MALLOC_ARENA_MAX``): glibc gives each new thread its own, up to 8 per
      core; the fetch pool and the lanes then each keep freed decode buffers and
      activations in their own arena. Two arenas cut the worker's peak RSS from ~1.9 GB
      to ~1.5 GB on the benchmark (exact mode) at no measured speed cost; one keeps
      the lanes' image buffers in the main heap, which unlike a thread arena's 64 MB
      heaps is not unmapped when a 12 MP photo's buffers are freed (700 instead of up
      to 2,750 page faults per image in the in-process limit). Lanes sharing it do
      not contend measurably: one process x 2 lanes, exact, 54.5-54.6 img/s with one
      arena, 53.0-53.7 with two.
    - mmap and trim thresholds (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``):
      a cached Pillow block is ``realloc``-ed to each image's exact size, which glibc
      does with ``mremap`` for mmap-ed blocks, so every photo faulted its pages in
      again (~1,300 page faults per corpus image, memset by Pillow). Serving blocks up
      to 32 MB from the heap and never trimming it took a full decode from 10.4 to
      8.0 ms per image and, with one arena, the exact-mode worker's page faults from
      ~1.0 M to 0.05-0.2 M per 480-image run. The cost: memory freed after a peak
      stays resident, which the peak RSS figure already counts.

    A no-op where glibc's ``mallopt`` is not available. Applies to threads created
    from now on (arenas) and to allocations from now on (thresholds).
    """
    import ctypes
    import ctypes.util

    # from glibc's malloc.h
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(m_arena_max, arenas)
        libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)
        libc.mallopt(m_trim_threshold, TRIM_THRESHOLD)
    except (OSError, AttributeError):
        pass


def resize_geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """``(new_w, new_h, left, top)`` of the reference's resize-256 and center-crop-224.

    Mirrors torchvision: the long side becomes ``int(256 * long / short)`` and the crop
    offsets are ``int(round((size - 224) / 2))`` in resized pixels.
    """
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(RESIZE * long / short)
    new_w, new_h = (RESIZE, new_long) if width <= height else (new_long, RESIZE)
    return new_w, new_h, round((new_w - CROP) / 2.0), round((new_h - CROP) / 2.0)


def crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The source region (float pixels) that the reference's resize + crop keeps."""
    new_w, new_h, left, top = resize_geometry(width, height)
    sx, sy = width / new_w, height / new_h
    return (left * sx, top * sy, (left + CROP) * sx, (top + CROP) * sy)


def crop_exact(img: Image.Image) -> Image.Image:
    """The reference's 224x224 crop, pixel for pixel: the same Pillow resize, then crop.

    Cheaper variants were measured and rejected: one ``resize(box=...)`` straight to
    224x224 computes its filter weights from the box and moves up to ~15% of pixels by
    one grey level (top-3 scores by up to ~2e-5); splitting Pillow's two passes to skip
    unused rows depends on which pass Pillow runs first, which varies by geometry and
    version. What makes this path cheaper than the reference is upstream: no extra
    full-size copies (``tasks.decode``), Pillow block reuse, batched normalisation.
    """
    new_w, new_h, left, top = resize_geometry(*img.size)
    resized = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    return resized.crop((left, top, left + CROP, top + CROP))


def crop_fast(img: Image.Image) -> Image.Image:
    """The same crop in one ``resize(box=...)``: a few pixels off by one grey level."""
    return img.resize((CROP, CROP), Image.Resampling.BILINEAR, box=crop_box(*img.size))


def crop_image(img: Image.Image, mode: str = "exact") -> torch.Tensor:
    """The 224x224x3 uint8 crop (HWC) of an RGB image in ``mode``."""
    import numpy as np
    import torch

    out = crop_exact(img) if mode == "exact" else crop_fast(img)
    return torch.from_numpy(np.array(out, dtype=np.uint8))


def decode_crop(data: bytes, max_pixels: int, mode: str = "exact") -> torch.Tensor:
    """Decode ``data`` in ``mode`` and return its 224x224x3 uint8 crop.

    Raises:
        DecodeError, TooLarge: as ``tasks.decode.decode_image`` and
            ``check_resize_budget`` (the same refusals in every mode).
        ValueError: an unknown mode.
    """
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
    img = decode_image(data, max_pixels, draft=FAST_DRAFT_MIN if mode == "fast" else None)
    check_resize_budget(img.size, max_pixels)
    return crop_image(img, mode)


def normalize(crops: Sequence[torch.Tensor], device: str = "cpu") -> torch.Tensor:
    """Stack uint8 HWC crops into a normalised float NCHW batch in channels_last layout.

    The arithmetic is the reference's, element by element (``x / 255``, ``- mean``,
    ``/ std`` in float32), so a crop equal to the reference's gives bit-equal input;
    doing it once per batch on ``device`` is what makes it cheap. The NHWC storage of
    the crops *is* channels_last, so no copy is needed for the layout.
    """
    import torch

    batch = torch.stack(list(crops)).to(device, non_blocking=True)
    x = batch.permute(0, 3, 1, 2).to(torch.float32).div_(255)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
