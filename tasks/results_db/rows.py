"""Records <-> rows: the v1 JSON record shape on the way out, label columns in the table."""

from __future__ import annotations

from typing import Any

from tasks.records import JobStatus, Label, Record


def record_row(
    job_id: str, index: int, record: Record, deduped: bool, now: float
) -> dict[str, Any]:
    """The ``records`` row of one outcome: the top-3 spread over rank columns."""
    row: dict[str, Any] = {
        "job_id": job_id,
        "idx": index,
        "uri": record.uri,
        "sha256": record.sha256,
        "status": record.status,
        "error": record.error,
        "model": record.model,
        "deduped": deduped,
        "written_at": now,
    }
    top3 = record.top3 or []
    for n in (1, 2, 3):
        label = top3[n - 1] if len(top3) >= n else None
        row[f"label{n}"] = label.label if label else None
        row[f"index{n}"] = label.index if label else None
        row[f"score{n}"] = label.score if label else None
    return row


def row_record(row: Any) -> Record:
    """The Record a ``records`` row (a RowMapping) holds, as ``Record.to_dict`` writes it."""
    top3 = [
        Label(row[f"label{n}"], int(row[f"index{n}"]), float(row[f"score{n}"]))
        for n in (1, 2, 3)
        if row[f"index{n}"] is not None
    ]
    return Record(
        uri=row["uri"],
        sha256=row["sha256"],
        status=row["status"],
        error=row["error"],
        top3=top3 or None,
        model=row["model"],
    )


def row_status(row: Any) -> JobStatus:
    """The JobStatus of a ``jobs`` row."""
    return JobStatus(
        job=row["job_id"],
        state=row["state"],
        total=int(row["total"]),
        ok=int(row["ok"]),
        error=int(row["error"]),
        deduped=int(row["deduped"]),
        created_at=float(row["created_at"]),
        first_result_at=row["first_result_at"],
        last_progress_at=row["last_progress_at"],
        finished_at=row["finished_at"],
        chunk_size=int(row["chunk_size"]),
        skipped=int(row["skipped"]),
        submit_error=row["submit_error"] or None,
    )
