"""Write a job's records as Parquet, one row per URI, in bounded memory.

Rows are the CSV export's flattened fields with proper types (``index1..3`` int32,
``score1..3`` float64, missing labels null). Records are converted to Arrow a batch of
``BATCH_ROWS`` at a time (Python objects for at most that many rows), and the batches
are written as one row group once they reach ``ROW_GROUP_ROWS``: a job of ten million
records never holds more than one row group, in Arrow's compact columns (~15 MB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO, Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import ConfigError
from tasks.settings import Settings

ROW_GROUP_ROWS = 100_000  # rows per Parquet row group (and the most held in memory)
BATCH_ROWS = 10_000  # rows held as Python objects before they become an Arrow batch
RANKS = (1, 2, 3)
CONTENT_TYPE = "application/vnd.apache.parquet"

SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("model", pa.string()),
    ]
    + [pa.field(f"label{n}", pa.string()) for n in RANKS]
    + [pa.field(f"index{n}", pa.int32()) for n in RANKS]
    + [pa.field(f"score{n}", pa.float64()) for n in RANKS]
)


def _empty_columns() -> dict[str, list[Any]]:
    return {name: [] for name in SCHEMA.names}


def _add_row(columns: dict[str, list[Any]], rec: dict[str, Any]) -> None:
    for name in ("uri", "sha256", "status", "error", "model"):
        columns[name].append(rec.get(name))
    top = rec.get("top3") or []
    for n in RANKS:
        t = top[n - 1] if len(top) >= n else None
        columns[f"label{n}"].append(t["label"] if t else None)
        columns[f"index{n}"].append(t["index"] if t else None)
        columns[f"score{n}"].append(float(t["score"]) if t else None)


def write_parquet(
    records: Iterable[dict[str, Any]],
    sink: str | IO[bytes],
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> int:
    """Write ``records`` (result schema v1 dicts) to ``sink``; return how many.

    Args:
        records: the job's records, streamed (``Job.results()``).
        sink: a file path or a binary file object (left open).
        row_group_rows: rows per row group; memory holds at most one group.
    """
    count = 0
    columns = _empty_columns()
    batches: list[pa.RecordBatch] = []
    held = 0  # rows in ``batches``
    step = min(BATCH_ROWS, row_group_rows)
    with pq.ParquetWriter(sink, SCHEMA, compression="zstd") as writer:
        for rec in records:
            _add_row(columns, rec)
            count += 1
            if len(columns["uri"]) >= step:
                batches.append(pa.RecordBatch.from_pydict(columns, schema=SCHEMA))
                held += len(columns["uri"])
                columns = _empty_columns()
                if held >= row_group_rows:
                    writer.write_table(pa.Table.from_batches(batches), row_group_size=held)
                    batches, held = [], 0
        if columns["uri"] or count == 0:
            batches.append(pa.RecordBatch.from_pydict(columns, schema=SCHEMA))
        if batches:
            table = pa.Table.from_batches(batches, schema=SCHEMA)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
    return count


def export_parquet(
    records: Callable[[], Iterable[dict[str, Any]]], output: str | None, settings: Settings
) -> int:
    """``bulktag results JOB --format parquet -o FILE|s3://...``; return the row count.

    Raises:
        ConfigError: no output named (Parquet is binary: it is not written to a
            terminal), or the S3 upload failed.
    """
    if output in (None, "-"):
        raise ConfigError("--format parquet needs -o FILE or -o s3://bucket/key")
    assert output is not None
    if output.startswith("s3://"):
        from producer.s3 import upload_export

        def spool(text: TextIO) -> int:
            text.flush()
            return write_parquet(records(), text.buffer)  # the spool file's bytes

        return upload_export(output, spool, settings, CONTENT_TYPE)
    with open(output, "wb") as out:
        return write_parquet(records(), out)
