"""The results database's larger queries: paging, label search, retention.

Functions of an open connection (inside a ``ResultsDB`` transaction), so the store's
retry and locking rules apply to them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tasks.records import Record
from tasks.results_db.rows import row_record
from tasks.results_db.schema import job_annotations, job_uris, jobs, records, result_cache

RANKS = (1, 2, 3)


def records_between(
    conn: sa.Connection, job_id: str, start: int, stop: int
) -> list[tuple[int, str, Record | None]]:
    """The job's URIs in ``[start, stop)`` with their records (None while pending)."""
    joined = job_uris.outerjoin(
        records, sa.and_(records.c.job_id == job_uris.c.job_id, records.c.idx == job_uris.c.idx)
    )
    query = (
        sa.select(job_uris.c.idx.label("at"), job_uris.c.uri.label("listed"), records)
        .select_from(joined)
        .where(job_uris.c.job_id == job_id, job_uris.c.idx >= start, job_uris.c.idx < stop)
        .order_by(job_uris.c.idx)
    )
    out: list[tuple[int, str, Record | None]] = []
    for row in conn.execute(query).mappings():
        rec = row_record(row) if row["status"] is not None else None
        out.append((int(row["at"]), str(row["listed"]), rec))
    return out


def search(
    conn: sa.Connection,
    indices: Sequence[int],
    *,
    min_score: float = 0.0,
    top1: bool = False,
    job_id: str | None = None,
    model_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Any]:
    """Rows of ok records whose top-3 (or top-1) holds one of ``indices`` with at least
    ``min_score``, newest first. Each rank is one ``(indexN, scoreN)`` index range, so
    the planner ORs index look-ups (SQLite MULTI-INDEX OR, PostgreSQL BitmapOr)."""
    if not indices:
        return []
    wanted = list(indices)
    ranks = (1,) if top1 else RANKS
    match = sa.or_(
        *[
            sa.and_(records.c[f"index{n}"].in_(wanted), records.c[f"score{n}"] >= min_score)
            for n in ranks
        ]
    )
    query = sa.select(records).where(match)
    if job_id is not None:
        query = query.where(records.c.job_id == job_id)
    if model_id is not None:
        query = query.where(records.c.model == model_id)
    # Newest first: by write time, then the job's later URIs first (as SEARCH_API's scan).
    query = query.order_by(records.c.written_at.desc(), records.c.idx.desc(), records.c.job_id)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(conn.execute(query).mappings())


def label_counts(
    conn: sa.Connection, *, model_id: str | None = None, job_id: str | None = None
) -> dict[int, int]:
    """How many ok records hold each class index anywhere in their top-3."""
    counts: dict[int, int] = {}
    for n in RANKS:
        column = records.c[f"index{n}"]
        # Only ok records have labels, so ``indexN IS NOT NULL`` is the status test, and
        # without filters the count is an index-only scan of (indexN, scoreN).
        query = sa.select(column, sa.func.count()).where(column.is_not(None))
        if job_id is not None:
            query = query.where(records.c.job_id == job_id)
        if model_id is not None:
            query = query.where(records.c.model == model_id)
        for index, count in conn.execute(query.group_by(column)):
            counts[int(index)] = counts.get(int(index), 0) + int(count)
    return counts


def _cache_entry_used(exclude_job: str | None = None) -> Any:
    """EXISTS: some record (of another job than ``exclude_job``) holds the cache entry."""
    used = sa.select(sa.literal(1)).where(
        records.c.sha256 == result_cache.c.sha256, records.c.model == result_cache.c.model_id
    )
    if exclude_job is not None:
        used = used.where(records.c.job_id != exclude_job)
    return used.exists()


def delete_job(conn: sa.Connection, job_id: str, *, cache: bool) -> bool:
    """Delete one job with its URIs and records; with ``cache``, first the cache entries
    that only this job's records referenced. False if there was no such job."""
    if cache:
        mine = (
            sa.select(sa.literal(1))
            .where(
                records.c.job_id == job_id,
                records.c.sha256 == result_cache.c.sha256,
                records.c.model == result_cache.c.model_id,
            )
            .exists()
        )
        conn.execute(sa.delete(result_cache).where(mine, ~_cache_entry_used(job_id)))
    return _delete_jobs(conn, [job_id]) == 1


def _delete_jobs(conn: sa.Connection, ids: Sequence[str]) -> int:
    """Delete jobs and their rows (children explicitly: no reliance on cascades)."""
    if not ids:
        return 0
    for table in (records, job_uris):
        conn.execute(sa.delete(table).where(table.c.job_id.in_(list(ids))))
    conn.execute(sa.delete(job_annotations).where(job_annotations.c.job_id.in_(list(ids))))
    return int(conn.execute(sa.delete(jobs).where(jobs.c.job_id.in_(list(ids)))).rowcount)


def prune(conn: sa.Connection, cutoff: float, *, cache: bool) -> tuple[int, int]:
    """Delete jobs that finished before ``cutoff`` (unix time); with ``cache``, cache
    entries older than ``cutoff`` that no remaining record references."""
    old = sa.select(jobs.c.job_id).where(
        jobs.c.state.in_(["done", "cancelled"]), jobs.c.finished_at < cutoff
    )
    deleted = _delete_jobs(conn, list(conn.scalars(old)))
    dropped = 0
    if cache:
        stale = sa.delete(result_cache).where(
            result_cache.c.created_at < cutoff, ~_cache_entry_used()
        )
        dropped = int(conn.execute(stale).rowcount)
    return deleted, dropped
