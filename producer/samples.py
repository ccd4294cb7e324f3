"""Build folders of realistic test/demo/benchmark photos from images that ship in packages.

Seeds are scikit-image's ``skimage.data`` photos and scikit-learn's sample images
(no download). Each output is a random crop of a seed, resized to a camera size,
lightly varied (flip, brightness) so contents differ, and saved as JPEG. A fraction
are byte-identical repeats, and optional broken files exercise error handling.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

CAMERA_SIZES = ((640, 480), (1920, 1080), (4000, 3000))
_SKIMAGE_SEEDS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",
    "camera",
    "coins",
    "clock",
    "brick",
)


def seed_images() -> list[Image.Image]:
    """The packaged photos, as RGB PIL images."""
    import skimage.data as data

    images = []
    for name in _SKIMAGE_SEEDS:
        load = getattr(data, "stereo_motorcycle" if name == "motorcycle" else name)
        arr = load()[0] if name == "motorcycle" else load()
        images.append(Image.fromarray(np.asarray(arr)).convert("RGB"))
    try:
        from sklearn.datasets import load_sample_image

        images += [Image.fromarray(load_sample_image(n)) for n in ("china.jpg", "flower.jpg")]
    except ImportError:  # scikit-learn is optional
        pass
    return images


@dataclass
class Corpus:
    """What ``build_corpus`` wrote."""

    root: Path
    unique: list[Path] = field(default_factory=list)
    repeats: list[Path] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)

    @property
    def all(self) -> list[Path]:
        return sorted(self.unique + self.repeats + self.broken)


def camera_photo(seed: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A random crop of ``seed`` with ``size``'s aspect ratio, resized to ``size``."""
    w, h = seed.size
    aspect = size[0] / size[1]
    scale = rng.uniform(0.6, 1.0)
    cw = min(w, int(h * aspect)) * scale
    ch = cw / aspect
    x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    img = seed.resize(size, Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))


def build_corpus(
    root: Path,
    n: int,
    *,
    sizes: Sequence[tuple[int, int]] = CAMERA_SIZES,
    repeat_fraction: float = 0.1,
    broken: int = 0,
    seed: int = 0,
    quality: int = 90,
) -> Corpus:
    """Write ``n`` images (unique + repeats) plus ``broken`` bad files under ``root``."""
    rng = random.Random(seed)
    seeds = seed_images()
    root.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(root)
    n_repeats = round(n * repeat_fraction)
    for i in range(n - n_repeats):
        size = sizes[i % len(sizes)]
        img = camera_photo(seeds[i % len(seeds)], size, rng)
        path = root / f"img_{i:05d}_{size[0]}x{size[1]}.jpg"
        img.save(path, "JPEG", quality=quality)
        corpus.unique.append(path)
    for j in range(n_repeats):
        original = corpus.unique[rng.randrange(len(corpus.unique))]
        path = root / "repeats" / f"copy_{j:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        shutil.copyfile(original, path)
        corpus.repeats.append(path)
    corpus.broken += write_broken_files(root / "broken", broken, corpus.unique[0])
    return corpus


def calibration_photos(count: int, *, seed: int = 1, quality: int = 90) -> list[bytes]:
    """``count`` JPEG photos in memory for ``bulktag weights calibrate``'s default set.

    Camera-size crops of the packaged photos (the sizes cycle as in ``build_corpus``),
    drawn with their own seed so they are not the benchmark corpus's images.
    """
    import io

    rng = random.Random(seed)
    seeds = seed_images()
    out = []
    for i in range(count):
        img = camera_photo(seeds[i % len(seeds)], CAMERA_SIZES[i % len(CAMERA_SIZES)], rng)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def write_broken_files(folder: Path, count: int, good_jpeg: Path) -> list[Path]:
    """Up to ``count`` files that look like images by name but are not decodable."""
    if count <= 0:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    data = good_jpeg.read_bytes()
    makers = [
        ("truncated.jpg", data[: len(data) // 3]),
        ("text.jpg", b"this is a text file, not a photo\n" * 20),
        ("empty.jpg", b""),
        ("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n"),
        ("random.png", random.Random(1).randbytes(4096)),
    ]
    paths = []
    for i in range(count):
        name, payload = makers[i % len(makers)]
        path = folder / (f"{i:02d}_{name}")
        path.write_bytes(payload)
        paths.append(path)
    return paths
