"""``bulktag sidecars JOB``: XMP sidecars that digiKam, darktable and Lightroom read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from producer.cli.common import settings_for
from producer.xmp import Tags
from tasks.errors import ConfigError


def score_fraction(text: str) -> float:
    """argparse type: a score between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def cmd_sidecars(args: argparse.Namespace) -> int:
    from producer.cli.jobs import results_job
    from producer.job import Job
    from producer.sidecars import write_sidecars

    settings = settings_for(args)
    job = Job.attach(results_job(args.job, None, settings), settings)
    out = Path(args.out).expanduser().absolute() if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")

    def say(path: Path, tags: Tags) -> None:
        if args.dry_run:
            print(f"would write {path}: {', '.join(tags.keywords)}")

    report = write_sidecars(
        job.results(), min_score=args.min_score, out=out, dry_run=args.dry_run, on_write=say
    )
    for line in report.failed[:20]:
        print(f"bulktag: warning: {line}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"bulktag: warning: ... and {len(report.failed) - 20} more", file=sys.stderr)
    print(("(dry run) " if args.dry_run else "") + report.summary())
    if report.need_out:
        print(
            f"bulktag: error: {len(report.need_out)} sidecars have nowhere to go (S3/HTTP "
            f"sources or read-only folders, e.g. {report.need_out[0]}): pass --out DIR",
            file=sys.stderr,
        )
        return 1
    return 1 if report.failed else 0


def add_commands(sub: Any) -> None:
    """Register ``bulktag sidecars`` on the ``bulktag`` subparsers."""
    p = sub.add_parser("sidecars", help="write XMP sidecars (photo.jpg.xmp) with a job's labels")
    p.add_argument("job")
    p.add_argument(
        "--min-score",
        type=score_fraction,
        default=0.0,
        metavar="S",
        help="only labels scoring at least S (0-1) become keywords (default 0: all top labels)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder for sidecars of S3/HTTP sources or read-only folders (mirrors the URI)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be written, write nothing"
    )
    p.set_defaults(func=cmd_sidecars)
