"""Decode modes: ``exact`` is the reference's pixels bit for bit, ``fast`` stays close."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from producer.samples import build_corpus
from tasks.decode import decode_image, reference_transform
from tasks.errors import DecodeError, TooLarge
from tasks.inference import Tagger
from tasks.preprocess import FAST_DRAFT_MIN, crop_box, decode_crop, normalize
from weights.checkpoint import load_checkpoint

MAX_PIXELS = 64_000_000


def reference_tensor(data: bytes) -> torch.Tensor:
    """The plain torchvision path, written without bulktag's decode."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    return reference_transform()(rgb)


def jpeg(size: tuple[int, int], seed: int = 0, **save: object) -> bytes:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), generator=gen)
    img = Image.fromarray(base.to(torch.uint8).numpy()).resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


@pytest.fixture(scope="module")
def tagger(dev_weights: Path) -> Tagger:
    return Tagger.from_checkpoint(load_checkpoint(dev_weights))


ODD_SIZES = [(640, 480), (480, 640), (333, 500), (344, 902), (1000, 257), (257, 3000)]


@pytest.mark.parametrize(
    "size", [*ODD_SIZES, (100, 80), (224, 224), (256, 256), (1920, 1080), (1080, 1920)]
)
def test_exact_mode_is_the_reference_bit_for_bit(size: tuple[int, int]) -> None:
    data = jpeg(size)
    ours = normalize([decode_crop(data, MAX_PIXELS, "exact")])[0]
    ref = reference_tensor(data)
    assert ours.shape == ref.shape == (3, 224, 224)
    assert torch.equal(ours, ref)


def test_exact_mode_keeps_reference_orientation_and_modes(tmp_path: Path) -> None:
    base = Image.open(io.BytesIO(jpeg((640, 480)))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    samples = {}
    for name, img, fmt, extra in [
        ("rotated", base, "JPEG", {"exif": exif.tobytes()}),
        ("grey", base.convert("L"), "JPEG", {}),
        ("alpha", base.convert("RGBA"), "PNG", {}),
    ]:
        out = io.BytesIO()
        img.save(out, fmt, **extra)
        samples[name] = out.getvalue()
    for name, data in samples.items():
        ours = normalize([decode_crop(data, MAX_PIXELS, "exact")])[0]
        assert torch.equal(ours, reference_tensor(data)), name


def test_normalize_is_the_reference_arithmetic_bit_for_bit() -> None:
    crop = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8)
    img = Image.fromarray(crop.numpy())
    from torchvision.transforms import functional as F

    ref = F.normalize(F.to_tensor(img), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    batch = normalize([crop, crop])
    assert torch.equal(batch[0], ref)
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_crop_box_mirrors_torchvision_geometry() -> None:
    # 4000x3000 -> 341x256, crop left round(58.5)=58, top 16: in source pixels
    left, top, right, bottom = crop_box(4000, 3000)
    scale_x, scale_y = 4000 / 341, 3000 / 256
    assert (left, top) == pytest.approx((58 * scale_x, 16 * scale_y))
    assert (right - left, bottom - top) == pytest.approx((224 * scale_x, 224 * scale_y))


def test_fast_mode_decodes_big_jpegs_smaller_but_never_below_the_resize_target() -> None:
    assert decode_image(jpeg((4000, 3000)), MAX_PIXELS, draft=FAST_DRAFT_MIN).size == (500, 375)
    assert decode_image(jpeg((1920, 1080)), MAX_PIXELS, draft=FAST_DRAFT_MIN).size == (480, 270)
    assert decode_image(jpeg((640, 480)), MAX_PIXELS, draft=FAST_DRAFT_MIN).size == (640, 480)
    png = io.BytesIO()
    Image.new("RGB", (1200, 900)).save(png, "PNG")  # not a JPEG: decoded in full
    assert decode_image(png.getvalue(), MAX_PIXELS, draft=FAST_DRAFT_MIN).size == (1200, 900)


def test_every_mode_refuses_the_same_inputs() -> None:
    for mode in ("exact", "fast"):
        with pytest.raises(DecodeError):
            decode_crop(b"not an image at all", MAX_PIXELS, mode)
        with pytest.raises(TooLarge):
            decode_crop(jpeg((4000, 3000)), 1_000_000, mode)
    with pytest.raises(ValueError, match="decode mode"):
        decode_crop(jpeg((64, 64)), MAX_PIXELS, "turbo")


def test_fast_mode_agrees_with_exact_on_camera_photos(tagger: Tagger, tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path, 9, sizes=[(1600, 1200), (1280, 720)], repeat_fraction=0)
    datas = [p.read_bytes() for p in corpus.unique]
    exact = tagger.top3_batch(normalize([decode_crop(d, MAX_PIXELS, "exact") for d in datas]))
    fast = tagger.top3_batch(normalize([decode_crop(d, MAX_PIXELS, "fast") for d in datas]))
    top1 = sum(e[0]["index"] == f[0]["index"] for e, f in zip(exact, fast, strict=True))
    # Measured 0.98+ on the benchmark corpus; a broken geometry or colour order gives ~0.
    assert top1 / len(datas) >= 0.7
    pairs = [(a, b) for e, f in zip(exact, fast, strict=True) for a, b in zip(e, f, strict=True)]
    worst = max(abs(a["score"] - b["score"]) for a, b in pairs)
    assert worst < 0.05
