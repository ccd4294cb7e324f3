"""``bulktag uploads prune``: remove upload files by the retention rule.

The API also prunes by itself, at most hourly (``producer.upload_job``); this command
is for cron, for a tighter limit, or for a host where the API is not running.
"""

from __future__ import annotations

import argparse
from typing import Any

from producer.cli.common import settings_for


def cmd_uploads_prune(args: argparse.Namespace) -> int:
    from producer.upload_job import prune_uploads

    settings = settings_for(args)
    report = prune_uploads(settings, args.older_than)
    print(
        f"{settings.upload_dir}: removed {report.removed} files "
        f"({report.freed_bytes / 1e6:.1f} MB), kept {report.kept}"
    )
    return 0


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_commands(sub: Any) -> None:
    """Register ``bulktag uploads`` on the ``bulktag`` subparsers."""
    p = sub.add_parser("uploads", help="files stored by POST /uploads")
    usub = p.add_subparsers(dest="uploads_cmd", required=True, metavar="ACTION")
    u = usub.add_parser("prune", help="remove upload files older than DAYS that no stored job uses")
    u.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="age limit (default BULKTAG_UPLOAD_RETENTION_DAYS, 7)",
    )
    u.set_defaults(func=cmd_uploads_prune)
