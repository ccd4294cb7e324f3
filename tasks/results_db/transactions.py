"""The transaction every results-database call runs in, and the job-row lock writes take.

Each write transaction starts by touching its job's row, which takes the row lock
(PostgreSQL) or the write lock (SQLite) first, so concurrent chunks of a job queue
instead of deadlocking. A dropped connection is retried: writes are idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tasks.errors import StoreUnavailable
from tasks.records import Record
from tasks.results_db import engine as engines
from tasks.results_db.schema import jobs, records

T = TypeVar("T")
Outcome = tuple[int, Record, bool]  # (index in job, record, deduped)

# A dropped connection (database restart, failover) is retried with backoff for about
# as long as the Redis client rides out a Redis restart (tasks.store): writes are
# idempotent, so replaying a transaction whose commit was lost is safe.
RETRY_FOR = 30.0  # seconds in all
RETRY_CAP = 5.0  # seconds: the longest single wait
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)


class Transactions:
    """A SQL engine, and ``_run``: one retried transaction per call."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert: Any = sqlite.insert if engines.is_sqlite(engine) else postgresql.insert
        self._insert_records = (
            self._insert(records)
            .on_conflict_do_nothing()
            .returning(records.c.status, records.c.deduped)
        )

    def _run(self, fn: Callable[[sa.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction, retrying transient connection faults."""
        deadline = time.monotonic() + RETRY_FOR
        wait = 0.1
        while True:
            try:
                with self.engine.connect() as conn:
                    if write:
                        conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                    with conn.begin():
                        return fn(conn)
            except _TRANSIENT as exc:
                if time.monotonic() + wait > deadline:
                    url = engines.safe_url(str(self.engine.url))
                    raise StoreUnavailable(f"results database {url}: {exc.orig}") from exc
                time.sleep(wait)
                wait = min(RETRY_CAP, wait * 2)

    @staticmethod
    def _lock_job(conn: sa.Connection, job_id: str) -> bool:
        """Take the job row's lock first thing in a write; False if there is no such job."""
        touch = sa.update(jobs).where(jobs.c.job_id == job_id).values(chunks=jobs.c.chunks)
        return conn.execute(touch).rowcount == 1

    @staticmethod
    def _finish_if_complete(conn: sa.Connection, job_id: str, now: float) -> bool:
        """Mark a running job done once every URI has a record; True if this did it."""
        done = (
            sa.update(jobs)
            .where(jobs.c.job_id == job_id, jobs.c.state == "running")
            .where(jobs.c.ok + jobs.c.error >= jobs.c.total)
            .values(state="done", finished_at=now)
        )
        return conn.execute(done).rowcount == 1
