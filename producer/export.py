"""Write a job's records as JSON Lines, CSV or Parquet: the one export path of
``bulktag results`` and ``bulktag run`` (Parquet is written by ``producer.parquet_export``)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.settings import Settings

CSV_FIELDS = ["uri", "status", "error", "sha256", "model"] + [
    f"{k}{n}" for n in (1, 2, 3) for k in ("label", "index", "score")
]


def write_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for rec in records:
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in ("uri", "status", "error", "sha256", "model")}
    for n, top in enumerate(rec.get("top3") or [], start=1):
        row[f"label{n}"] = top["label"]
        row[f"index{n}"] = top["index"]
        row[f"score{n}"] = f"{top['score']:.6f}"
    return row


def write_csv(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    n = 0
    for rec in records:
        writer.writerow(flatten(rec))
        n += 1
    return n


Writer = Callable[[Iterable[dict[str, Any]], TextIO], int]
# Formats this build can write, with the MIME type an S3 upload is labelled with.
WRITERS: dict[str, tuple[Writer, str]] = {
    "jsonl": (write_jsonl, "application/x-ndjson"),
    "csv": (write_csv, "text/csv"),
}


# Binary formats, written by their own module to a file or S3 (never to a terminal).
BINARY_FORMATS = ("parquet",)


def check_format(fmt: str) -> Writer | None:
    """The text writer for ``fmt`` (None: Parquet, see ``producer.parquet_export``);
    callers check before a long job, not after it.

    Raises:
        ConfigError: this build cannot write ``fmt`` (one line, before any work).
    """
    if fmt in BINARY_FORMATS:
        return None
    try:
        return WRITERS[fmt][0]
    except KeyError:
        raise ConfigError(
            f"--format {fmt} is not available yet in this version of bulktag "
            f"(available: {', '.join([*WRITERS, *BINARY_FORMATS])})"
        ) from None


def export_records(
    records: Iterable[dict[str, Any]], fmt: str, output: str | None, settings: Settings
) -> int:
    """Write ``records`` as ``fmt`` to ``output``: a file, ``s3://bucket/key``, or stdout.

    Args:
        records: final records, streamed (``Job.results()``); never held in memory.
        fmt: ``jsonl``, ``csv`` (see ``WRITERS``) or ``parquet``.
        output: a file path, an ``s3://`` URL, or None / ``-`` for stdout.
        settings: the S3 endpoint for ``s3://`` outputs.

    Returns:
        How many records were written.

    Raises:
        ConfigError: an unknown format; Parquet to stdout.
    """
    writer = check_format(fmt)
    if writer is None:
        from producer.parquet_export import export_parquet  # pyarrow only when used

        return export_parquet(lambda: records, output, settings)
    if output in (None, "-"):
        return writer(records, sys.stdout)
    if output.startswith("s3://"):
        from producer.s3 import upload_export  # boto3 only when S3 is used

        return upload_export(output, lambda out: writer(records, out), settings, WRITERS[fmt][1])
    with open(output, "w", encoding="utf-8", newline="") as out:
        return writer(records, out)
