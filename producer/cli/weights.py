"""``bulktag weights``: fetch, import, import-custom, dev-untrained, calibrate (int8), show."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from producer.cli.common import positive_int
from tasks.settings import Settings


def cmd_weights(args: argparse.Namespace) -> int:
    from weights import fetch

    dest = Path(args.output).expanduser() if args.output else Settings.from_env().weights
    if args.weights_cmd == "fetch":
        digest = fetch.fetch_official(dest)
    elif args.weights_cmd == "import":
        digest = fetch.import_official(Path(args.file), dest)
    elif args.weights_cmd == "dev-untrained":
        digest = fetch.write_untrained(dest, seed=args.seed)
        print(f"WARNING: {fetch.UNTRAINED_WARNING}", file=sys.stderr)
    elif args.weights_cmd == "calibrate":
        return _calibrate(args, dest)
    else:  # show
        from weights.checkpoint import load_checkpoint

        ckpt = load_checkpoint(dest, Settings.from_env().weights_sha256)
        print(json.dumps({"path": str(dest), "model_id": ckpt.model_id, **ckpt.meta}, indent=2))
        return 0
    from weights.checkpoint import model_id_for

    print(f"wrote {dest} (sha256 {digest}, model id {model_id_for(digest)})")
    return 0


def _calibration_files(paths: Sequence[str], count: int) -> list[Path]:
    """Up to ``count`` image files from files and folders, spread evenly over them."""
    from producer.sources import looks_like_image

    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and looks_like_image(p))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"bulktag: error: no such file or folder: {path}")
    step = max(1, len(files) // count)
    return files[::step][:count]


def _calibrate(args: argparse.Namespace, weights: Path) -> int:
    """``bulktag weights calibrate``: observe activations on photos, save for int8 workers."""
    from tasks.quantize import calibrate_images, calibration_path, write_calibration
    from weights.checkpoint import load_checkpoint

    settings = Settings.from_env()
    ckpt = load_checkpoint(weights, settings.weights_sha256)
    out = Path(args.calibration).expanduser() if args.calibration else calibration_path(weights)
    if args.images:
        files = _calibration_files(args.images, args.count)
        source = f"{len(files)} files from {', '.join(args.images)}"
        photos: Iterator[bytes] = (f.read_bytes() for f in files)
    else:
        try:
            from producer.samples import calibration_photos
        except ImportError:
            raise SystemExit(
                "bulktag: error: the default calibration photos need scikit-image "
                "(pip install -e '.[dev]'); or pass --images with photos like yours"
            ) from None
        source = f"{args.count} packaged sample photos (producer.samples, seed 1)"
        photos = iter(calibration_photos(args.count))
    print(f"calibrating int8 activations for {ckpt.model_id} on {source} ...", flush=True)
    observers, used, skipped = calibrate_images(ckpt, photos, max_pixels=settings.max_pixels)
    cal = write_calibration(out, ckpt, observers, source=source, images=used)
    note = f", {skipped} undecodable skipped" if skipped else ""
    print(
        f"wrote {out} ({used} images{note}); workers with --precision int8 tag as "
        f"{ckpt.model_id}+int8-{cal.short_id}"
    )
    return 0


def cmd_import_custom(args: argparse.Namespace) -> int:
    """``bulktag weights import-custom``: your own fine-tuned resnet18 (``weights.custom``)."""
    from weights.checkpoint import model_id_for
    from weights.custom import import_custom, read_labels

    dest = Path(args.output).expanduser()
    labels = Path(args.labels).expanduser()
    digest = import_custom(Path(args.file).expanduser(), labels, dest)
    print(
        f"wrote {dest} (sha256 {digest}, model id {model_id_for(digest)}, "
        f"{len(read_labels(labels))} labels); run workers with BULKTAG_WEIGHTS={dest}"
    )
    return 0


def add_commands(sub: Any) -> None:
    """Register this group's subcommands on ``sub``."""
    p = sub.add_parser("weights", help="get, import, create or inspect model checkpoints")
    wsub = p.add_subparsers(dest="weights_cmd", required=True, metavar="ACTION")
    w = wsub.add_parser("fetch", help="download official IMAGENET1K_V1 weights (sha256-pinned)")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    w = wsub.add_parser("import", help="convert a downloaded resnet18-f37072fd.pth")
    w.add_argument("file")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    w = wsub.add_parser("dev-untrained", help="write seeded random weights (tests/offline)")
    w.add_argument("-o", "--output", required=True, help="checkpoint path")
    w.add_argument("--seed", type=int, default=0)
    w = wsub.add_parser(
        "calibrate", help="measure activation ranges for --precision int8 (writes WEIGHTS.int8)"
    )
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    w.add_argument(
        "--images", nargs="+", help="photos or folders like yours (default: packaged samples)"
    )
    w.add_argument("--count", type=positive_int, default=48, help="images to use (default 48)")
    w.add_argument("--calibration", help="file to write (default: the checkpoint path + .int8)")
    w = wsub.add_parser("show", help="print a checkpoint's model id and metadata")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    p.set_defaults(func=cmd_weights)
    w = wsub.add_parser(
        "import-custom", help="import your own fine-tuned resnet18 (N classes, labels file)"
    )
    w.add_argument("file", metavar="MODEL.pth", help="resnet18 state_dict (or a checkpoint)")
    w.add_argument(
        "--labels", required=True, metavar="LABELS.txt", help="one label per line, class order"
    )
    w.add_argument("-o", "--output", required=True, metavar="CHECKPOINT", help="file to write")
    w.set_defaults(func=cmd_import_custom)
