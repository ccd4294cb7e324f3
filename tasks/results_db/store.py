"""ResultsDB: every read and write of jobs, records and the dedupe cache in SQL.

Writes are idempotent transactions: a record goes in with ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` and the job's counts grow by the rows that statement actually
inserted, in the same transaction. A chunk delivered twice, a worker killed between
steps, or a transaction replayed after a dropped connection therefore ends with one
record per URI and counts that add up. Each write transaction starts by touching its
job's row, which takes the row lock (PostgreSQL) or the write lock (SQLite) first, so
concurrent chunks of a job queue instead of deadlocking.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from tasks.errors import JobNotFound
from tasks.results_db import engine as engines
from tasks.results_db import queries
from tasks.results_db.cache import Cache
from tasks.results_db.reads import Reads
from tasks.results_db.rows import record_row
from tasks.results_db.schema import job_annotations, job_uris, jobs, records
from tasks.results_db.transactions import Outcome


class ResultsDB(Reads, Cache):
    """Jobs, per-URI records and the (model id, sha256) cache in one SQL database."""

    @classmethod
    def open(cls, url: str) -> ResultsDB:
        """The database at ``url``, its schema checked (see ``engine.engine_for``)."""
        return cls(engines.engine_for(url))

    @classmethod
    def in_memory(cls) -> ResultsDB:
        """A private in-memory SQLite database (unit tests, as dramatiq's stub broker)."""
        engine = engines.create_engine("sqlite://")
        engines.ensure_schema(engine)
        return cls(engine)

    # -- jobs --------------------------------------------------------------------------
    def create_job(self, job_id: str, chunk_size: int, source: str) -> bool:
        """Create the job; False if a job with that id already exists."""
        row = {
            "job_id": job_id,
            "state": "enumerating",
            "chunk_size": chunk_size,
            "created_at": time.time(),
            "source": source,
        }
        stmt = self._insert(jobs).values(row).on_conflict_do_nothing().returning(jobs.c.job_id)
        return self._run(lambda c: c.scalar(stmt) is not None)

    def add_uris(
        self,
        job_id: str,
        first: int,
        chunks: Sequence[Sequence[str]],
        *,
        skipped: int | None = None,
    ) -> None:
        """Book ``chunks`` of URIs as indices ``first``, ``first + 1``, ... of the job
        (and, if given, the count of files the walk ``skipped`` so far)."""
        rows = [
            (job_id, first + i, uri) for i, uri in enumerate(u for chunk in chunks for u in chunk)
        ]
        n = len(rows)
        values: dict[str, Any] = {"total": jobs.c.total + n, "chunks": jobs.c.chunks + len(chunks)}
        if skipped is not None:
            values["skipped"] = skipped

        def book(conn: sa.Connection) -> None:
            self._bulk_uris(conn, rows)
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(**values))

        if rows:
            self._run(book)

    def note_skipped(self, job_id: str, count: int) -> None:
        """Record how many files the walk saw but did not take (not images)."""
        stmt = sa.update(jobs).where(jobs.c.job_id == job_id).values(skipped=count)
        self._run(lambda c: c.execute(stmt))

    def _bulk_uris(self, conn: sa.Connection, rows: list[tuple[str, int, str]]) -> None:
        """Insert URI rows at the driver's speed: the submit path's hot loop (a million
        URIs must go in at >= 50,000/s). SQLite: one prepared executemany; PostgreSQL:
        COPY. Both inside the caller's transaction."""
        if engines.is_sqlite(self.engine):
            conn.exec_driver_sql("INSERT INTO job_uris (job_id, idx, uri) VALUES (?, ?, ?)", rows)
            return
        driver: Any = conn.connection.driver_connection  # psycopg 3, same transaction
        with (
            driver.cursor() as cur,
            cur.copy("COPY job_uris (job_id, idx, uri) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def finish_enumeration(self, job_id: str) -> bool:
        """End enumeration; True if the job is thereby done (every URI already has a record)."""

        def finish(conn: sa.Connection) -> bool:
            running = (
                sa.update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state == "enumerating")
                .values(state="running")
            )
            if conn.execute(running).rowcount == 0:
                return False
            return self._finish_if_complete(conn, job_id, time.time())

        return self._run(finish)

    def abort_enumeration(self, job_id: str, sent: int, reason: str) -> bool:
        """Cut the job back to the ``sent`` URIs that were enqueued and end enumeration."""

        def cut(conn: sa.Connection) -> None:
            conn.execute(
                sa.delete(job_uris).where(job_uris.c.job_id == job_id, job_uris.c.idx >= sent)
            )
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(total=sent, submit_error=reason[:500])
            )

        self._run(cut)
        return self.finish_enumeration(job_id)

    def delete_job(self, job_id: str, *, cache: bool = False) -> bool:
        """Delete the job, its URIs and records (and with ``cache`` the cache entries only
        its records referenced); False if there was no such job."""
        return self._run(lambda c: queries.delete_job(c, job_id, cache=cache))

    def prune(self, older_than: float, *, cache: bool = False) -> tuple[int, int]:
        """Delete jobs finished more than ``older_than`` seconds ago (and, with ``cache``,
        cache entries no remaining record references). Returns (jobs, cache entries)."""
        return self._run(lambda c: queries.prune(c, time.time() - older_than, cache=cache))

    def cancel_job(self, job_id: str) -> str:
        """Cancel the job if it is still going; return the state it was in.

        Raises:
            JobNotFound: no such job.
        """

        def cancel(conn: sa.Connection) -> str:
            if not self._lock_job(conn, job_id):
                raise JobNotFound(f"no job named {job_id!r}")
            state = str(conn.scalar(sa.select(jobs.c.state).where(jobs.c.job_id == job_id)))
            if state in ("enumerating", "running"):
                conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.job_id == job_id)
                    .values(state="cancelled", finished_at=time.time())
                )
            return state

        return self._run(cancel)

    def begin_retry_round(self, job_id: str) -> int:
        """Number the next retry of this job's URIs (1, 2, ...): it keys fresh chunk ids."""
        bump = (
            sa.update(jobs)
            .where(jobs.c.job_id == job_id)
            .values(retry_round=jobs.c.retry_round + 1)
            .returning(jobs.c.retry_round)
        )
        return int(self._run(lambda c: c.scalar(bump)) or 0)

    def reopen_errors(self, job_id: str, indices: Sequence[int]) -> int:
        """Delete and un-count the error records at ``indices`` in one transaction, so
        ok + error + pending == total holds throughout; a done job runs again."""
        if not indices:
            return 0

        def reopen(conn: sa.Connection) -> int:
            if not self._lock_job(conn, job_id):
                return 0
            gone = conn.execute(
                sa.delete(records).where(
                    records.c.job_id == job_id,
                    records.c.idx.in_(list(indices)),
                    records.c.status == "error",
                )
            ).rowcount
            if gone:
                conn.execute(
                    sa.update(jobs).where(jobs.c.job_id == job_id).values(error=jobs.c.error - gone)
                )
                conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.job_id == job_id, jobs.c.state == "done")
                    .values(state="running", finished_at=None)
                )
            return int(gone)

        return self._run(reopen)

    def annotate_job(self, job_id: str, **fields: str) -> None:
        """Set descriptive fields (``reprocess_of``, ``schedule``, ``model``, ``submit_error``)."""

        def annotate(conn: sa.Connection) -> None:
            if "submit_error" in fields:
                conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.job_id == job_id)
                    .values(submit_error=fields["submit_error"])
                )
            for name, value in fields.items():
                if name == "submit_error":
                    continue
                stmt = self._insert(job_annotations).values(job_id=job_id, name=name, value=value)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["job_id", "name"], set_={"value": value}
                    )
                )

        self._run(annotate)

    # -- records -----------------------------------------------------------------------
    def record_outcomes(self, job_id: str, outcomes: Iterable[Outcome]) -> bool:
        """Write final records ``(index, record, deduped)`` and their counts in one
        transaction, idempotently. Returns True if this write finished the job."""
        now = time.time()
        rows = [record_row(job_id, i, rec, dd, now) for i, rec, dd in outcomes]
        if not rows:
            return False
        indices = [row["idx"] for row in rows]
        low, high = min(indices), max(indices)
        # A chunk's indices are (nearly) contiguous: one range, whatever its size. A retry
        # chunk may scatter a few indices over the whole job: those by value.
        span = (
            job_uris.c.idx.between(low, high)
            if high - low < 4 * len(indices)
            else job_uris.c.idx.in_(indices)
        )
        listed = sa.select(job_uris.c.idx).where(job_uris.c.job_id == job_id, span)

        def write(conn: sa.Connection) -> bool:
            if not self._lock_job(conn, job_id):  # a deleted job's late chunk: recreate nothing
                return False
            # Only indices the job lists: a message of a publish batch the producer cut
            # back (Redis refused part of it) must not count beyond ``total``.
            known = set(conn.scalars(listed))
            keep = [row for row in rows if row["idx"] in known]
            if not keep:
                return False
            # executemany + RETURNING: SQLAlchemy batches the rows into multi-row
            # INSERTs ("insertmanyvalues") from one cached statement; a literal multi-row
            # .values() would be compiled again for every chunk.
            inserted = conn.execute(self._insert_records, keep).all()
            if not inserted:
                return False
            ok = sum(1 for status, _ in inserted if status == "ok")
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(
                    ok=jobs.c.ok + ok,
                    error=jobs.c.error + (len(inserted) - ok),
                    deduped=jobs.c.deduped + sum(1 for _, dd in inserted if dd),
                    first_result_at=sa.func.coalesce(jobs.c.first_result_at, now),
                    last_progress_at=now,
                )
            )
            return self._finish_if_complete(conn, job_id, now)

        return self._run(write)
