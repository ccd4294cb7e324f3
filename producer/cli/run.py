"""``bulktag run``: one command for one machine (the work is ``producer.local_run``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from producer.cli.common import DECODE_MODES, DEVICES, PRECISIONS, positive_int


def cmd_run(args: argparse.Namespace) -> int:
    from producer.local_run import run_command

    return run_command(args)


def add_commands(sub: Any) -> None:
    """Register ``bulktag run`` on the ``bulktag`` subparsers."""
    p = sub.add_parser(
        "run",
        help="tag folders on this machine in one command (starts and stops Redis and a worker)",
        description="Start a private redis-server and a local worker, tag SOURCES, write the "
        "results, stop everything. Results also stay in the run's store "
        "(~/.cache/bulktag/run): a second run of the same photos comes from the cache.",
    )
    p.add_argument("sources", nargs="+", help="folder, file, URI, @list.txt or -")
    p.add_argument("--job", help="job id (default: generated)")
    p.add_argument(
        "-o", "--output", help="file or s3://bucket/key for all records (default: a table)"
    )
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "parquet"],
        help="results format (default: from the -o suffix, else jsonl)",
    )
    p.add_argument("--sidecars", action="store_true", help="also write an XMP sidecar per image")
    p.add_argument(
        "--concurrency", type=_auto_int, help="worker processes (default auto: one per core)"
    )
    p.add_argument("--threads", type=_auto_int, help="CPU threads per process (default auto)")
    p.add_argument("--batch-size", type=int, help="most images per forward pass (default 16)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default, reference-exact), bf16, fp16 (cuda only), int8 (calibrated)",
    )
    p.add_argument(
        "--decode", choices=DECODE_MODES, help="exact (default) or fast (JPEG DCT scaling)"
    )
    p.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    p.add_argument("--weights", type=Path, help="checkpoint path (env BULKTAG_WEIGHTS)")
    p.add_argument(
        "--redis-url",
        dest="run_redis_url",
        help="use this Redis instead of starting a private one (jobs get a queue of their own)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        help="URIs per task (default 32; smaller = earlier results)",
    )
    p.set_defaults(func=cmd_run)


def _auto_int(value: str) -> str:
    """``auto`` or a positive integer, passed on to ``bulktag worker`` as written."""
    if value.lower() == "auto" or (value.isdigit() and int(value) >= 1):
        return value.lower()
    raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 1, got {value!r}")
