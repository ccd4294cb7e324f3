"""``python -m bench.formats``: decode speed per photo format, one core, beside JPEG.

The same photos (``producer.samples``' packaged seeds at a camera size) are written as
JPEG (quality 90), HEIC (with a 320-px thumbnail, as iPhones write), AVIF, and DNG from
their Bayer mosaic with a 1620x1080 JPEG preview (as Nikon and Sony embed) or without
one. Each file is decoded and cropped to 224x224 by the worker's own
``tasks.preprocess.decode_crop`` in one thread, ``exact`` and ``fast``, and the crops
are run through the seeded untrained model to compare (a) each format with the same
photo as lossless PNG and (b) each format's fast path with its exact one, beside
JPEG's fast-vs-exact figure: the agreement ``--decode fast`` promises.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from bench import report

if TYPE_CHECKING:
    import torch

    from tasks.inference import Tagger

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = 8
DEFAULT_SIZE = (3000, 2000)  # 6 MP: camera-like without minutes of HEIC/AVIF encoding
RAW_PREVIEW = (1620, 1080)
HEIC_THUMBNAIL = 320  # iPhone HEICs carry a 320x240 thumbnail
# (label, file suffix) of every measured format, JPEG first as the yardstick.
FORMATS = (
    ("JPEG (q90)", "jpg"),
    ("PNG (lossless source)", "png"),
    ("HEIC (q90, 320-px thumbnail)", "heic"),
    ("AVIF (q90)", "avif"),
    ("DNG via embedded 1620x1080 preview", "preview.dng"),
    ("DNG via half-size demosaic (no preview)", "bare.dng"),
)


@dataclass
class Speed:
    images: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        """Wall-clock rate (disturbed by whatever else the machine runs)."""
        return self.images / self.seconds

    @property
    def per_core(self) -> float:
        """Images per CPU second of this process: the per-core rate, load-independent."""
        return self.images / self.cpu_seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.images


def build(root: Path, photos: int, size: tuple[int, int]) -> list[Path]:
    """The photos as lossless PNG, then in every format; reused when already there."""
    from producer.samples import seed_images
    from tests.format_fixtures import avif_bytes, dng_bytes, heic_bytes, jpeg_bytes

    done = root / ".complete"
    stems = [root / f"photo_{i:02d}" for i in range(photos)]
    if done.exists():
        return stems
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    seeds = seed_images()
    print(f"bench.formats: writing {photos} photos at {size[0]}x{size[1]} in {root} ...")
    for stem in stems:
        img = seeds[rng.randrange(len(seeds))]
        img = img.resize(size)
        if rng.random() < 0.5:  # mirror some: different contents from the same seed
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(stem.with_suffix(".png"))
        stem.with_suffix(".jpg").write_bytes(jpeg_bytes(img))
        stem.with_suffix(".heic").write_bytes(heic_bytes(img, thumbnail=HEIC_THUMBNAIL))
        stem.with_suffix(".avif").write_bytes(avif_bytes(img))
        preview = img.resize(RAW_PREVIEW)
        stem.with_suffix(".preview.dng").write_bytes(dng_bytes(img, preview=preview))
        stem.with_suffix(".bare.dng").write_bytes(dng_bytes(img))
    done.write_text(str(photos))
    return stems


def measure(files: list[Path], mode: str, repeat: int) -> tuple[Speed, list[torch.Tensor]]:
    """Decode + crop every file ``repeat`` times in this thread; the last round's crops."""
    from tasks.preprocess import decode_crop

    contents = [f.read_bytes() for f in files]
    crops: list[torch.Tensor] = []
    wall = cpu = 0.0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        crops = [decode_crop(data, 64_000_000, mode) for data in contents]
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return Speed(len(contents) * repeat, wall, cpu), crops


TopK = list[tuple[list[int], list[float]]]


def top3(tagger: Tagger, crops: list[torch.Tensor]) -> TopK:
    from tasks.preprocess import normalize

    out = tagger.top3_batch(normalize(crops))
    return [([t["index"] for t in r], [t["score"] for t in r]) for r in out]


def compare(ref: TopK, got: TopK) -> report.Agreement:
    """Agreement of two lists of top-3 results on the same photos, in order."""
    keys = [str(i) for i in range(len(ref))]
    return report.agreement(
        dict(zip(keys, ref, strict=True)), dict(zip(keys, got, strict=True)), keys
    )


def run(args: argparse.Namespace) -> str:
    from bench.__main__ import dev_weights
    from bench.inprocess import load_tagger

    root = args.workdir / f"formats-{args.photos}-{args.size[0]}x{args.size[1]}"
    stems = build(root, args.photos, args.size)
    weights = args.weights or dev_weights(args.workdir / "resnet18-untrained-seed0.pt")
    tagger = load_tagger(weights, "fp32", "exact")  # one thread, the worker's set-up
    results: dict[str, dict[str, tuple[Speed, TopK]]] = {}
    for label, suffix in FORMATS:
        files = [s.with_suffix(f".{suffix}") for s in stems]
        results[suffix] = {}
        for mode in ("exact", "fast"):
            speed, crops = measure(files, mode, args.repeat)
            results[suffix][mode] = (speed, top3(tagger, crops))
            print(
                f"{label:42s} {mode:5s} {speed.per_core:6.1f} img/s per core "
                f"({speed.cpu_ms:6.1f} ms CPU per image; wall {speed.per_second:.1f} img/s)",
                flush=True,
            )
    source = results["png"]["exact"][1]
    jpeg_fast = compare(results["jpg"]["exact"][1], results["jpg"]["fast"][1])
    rows = []
    for label, suffix in FORMATS:
        exact, fast = results[suffix]["exact"], results[suffix]["fast"]
        vs_png = compare(source, exact[1])
        fast_vs_exact = compare(exact[1], fast[1])
        # The fast mode's printed figure is its top-1 / top-3 agreement (README).
        within = fast_vs_exact.top1 >= jpeg_fast.top1 and fast_vs_exact.top3 >= jpeg_fast.top3
        rows.append(
            [
                label,
                f"{exact[0].per_core:.1f} ({exact[0].cpu_ms:.1f} ms)",
                f"{fast[0].per_core:.1f} ({fast[0].cpu_ms:.1f} ms)",
                f"{vs_png} ({vs_png.max_score_diff:.1e})",
                f"{fast_vs_exact} ({fast_vs_exact.max_score_diff:.1e})"
                + ("" if suffix == "jpg" else (" within" if within else " **outside**")),
            ]
        )
    info = report.machine()
    head = [
        "format",
        "exact img/s per core (CPU per image)",
        "fast img/s per core (CPU per image)",
        "exact vs the PNG source: top-1 / top-3 (max score diff)",
        "fast vs exact: top-1 / top-3 (max score diff); vs JPEG's",
    ]
    return "\n".join(
        [
            "## Decode speed by photo format (`python -m bench.formats`)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')}: {args.photos} photos at "
            f"{args.size[0]}x{args.size[1]} from producer.samples, each decoded and cropped "
            f"{args.repeat}x by `tasks.preprocess.decode_crop` in one thread. img/s per "
            "core = images per CPU second of the process (threads a library starts "
            "included), which the machine's other load disturbs less than wall time. "
            "Agreement: the crops' top-3 on seeded untrained weights (small margins: "
            "pessimistic); a fast path counts as within when its top-1 / top-3 agreement "
            "with exact is at least JPEG's.",
            "",
            f"- CPU: {info['cpu']}; load average (1/5/15 min) before: {args.load_before}; "
            f"after: {report.load_average()}",
            f"- Software: {info['software']}; {_codec_versions()}",
            "",
            report.table(head, rows),
            "",
            "Fast paths: JPEG and a RAW's JPEG preview decode at 1/2-1/8 scale (libjpeg DCT "
            "scaling, both sides kept >= 256); a HEIC uses its embedded thumbnail only when "
            "both sides are >= 256, which the iPhone-style 320x240 one is not, so HEIC fast "
            "is a full decode; AVIF, PNG and the demosaic have no reduced decode (their fast "
            "column differs only by the cheaper crop). With these untrained weights top-1 / "
            "top-3 hardly vary between photos, so the max score difference is the telling "
            "column: compare each fast path's with JPEG's.",
        ]
    )


def _codec_versions() -> str:
    import PIL
    import pillow_heif
    import rawpy

    libheif = pillow_heif.libheif_version()
    libraw = ".".join(map(str, rawpy.libraw_version))
    return (
        f"Pillow {PIL.__version__}, pillow-heif {pillow_heif.__version__} "
        f"(libheif {libheif}), rawpy {rawpy.__version__} (LibRaw {libraw})"  # type: ignore[attr-defined]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.formats", description=__doc__)
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS)
    parser.add_argument(
        "--size",
        type=lambda v: tuple(int(x) for x in v.split("x")),
        default=DEFAULT_SIZE,
        help="WxH of the photos (default 3000x2000)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="decode rounds per format")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: seeded untrained)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = report.load_average()
    args.workdir.mkdir(parents=True, exist_ok=True)
    section = run(args)
    print("\n" + section)
    if not args.no_write:
        report.write_section(args.out, "formats", section)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
