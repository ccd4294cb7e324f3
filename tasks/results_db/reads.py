"""Reads of the results database: job status, URIs, records, search, label counts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from tasks.errors import JobNotFound
from tasks.records import JobStatus, Record
from tasks.results_db import queries
from tasks.results_db.rows import row_record, row_status
from tasks.results_db.schema import job_annotations, job_uris, jobs, records
from tasks.results_db.transactions import Transactions


class Reads(Transactions):
    """Everything that reads jobs and records (never writes)."""

    def job_state(self, job_id: str) -> str | None:
        query = sa.select(jobs.c.state).where(jobs.c.job_id == job_id)
        return self._run(lambda c: c.scalar(query), write=False)

    def status(self, job_id: str) -> JobStatus:
        """The job's status snapshot. Raises JobNotFound."""
        row = self._run(
            lambda c: c.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().first(),
            write=False,
        )
        if row is None:
            raise JobNotFound(f"no job named {job_id!r}")
        return row_status(row)

    def list_jobs(self, limit: int = 50) -> list[str]:
        """Job ids, newest first."""
        query = sa.select(jobs.c.job_id).order_by(jobs.c.created_at.desc()).limit(limit)
        return self._run(lambda c: list(c.scalars(query)), write=False)

    def job_uri(self, job_id: str, index: int) -> str | None:
        """The URI at ``index`` of the job (None past its end)."""
        query = sa.select(job_uris.c.uri).where(
            job_uris.c.job_id == job_id, job_uris.c.idx == index
        )
        return self._run(lambda c: c.scalar(query), write=False)

    def iter_uris(self, job_id: str, batch: int = 1000) -> Iterator[str]:
        """The job's URIs in submission order, ``batch`` at a time (reprocess)."""
        start = 0
        while True:
            query = (
                sa.select(job_uris.c.uri)
                .where(
                    job_uris.c.job_id == job_id,
                    job_uris.c.idx >= start,
                    job_uris.c.idx < start + batch,
                )
                .order_by(job_uris.c.idx)
            )
            page = self._run(lambda c, q=query: list(c.scalars(q)), write=False)  # type: ignore[misc]
            if not page and start >= self.status(job_id).total:
                return
            yield from page
            start += batch

    def job_field(self, job_id: str, name: str) -> str | None:
        """A job's descriptive field (see ``annotate_job``), or a status column by name."""
        if name in jobs.c and name != "job_id":
            query: Any = sa.select(jobs.c[name]).where(jobs.c.job_id == job_id)
        else:
            query = sa.select(job_annotations.c.value).where(
                job_annotations.c.job_id == job_id, job_annotations.c.name == name
            )
        value = self._run(lambda c: c.scalar(query), write=False)
        return None if value is None else str(value)

    def reprocess_versions(self, root_job_id: str) -> dict[str, str]:
        """``{model id: job id}`` of the reprocess jobs of ``root_job_id`` (newest wins),
        from their ``reprocess_of`` and ``model`` annotations: survives a Redis flush."""
        of = job_annotations.alias("of")
        model = job_annotations.alias("model")
        query = (
            sa.select(model.c.value, of.c.job_id)
            .join(model, sa.and_(model.c.job_id == of.c.job_id, model.c.name == "model"))
            .join(jobs, jobs.c.job_id == of.c.job_id)
            .where(of.c.name == "reprocess_of", of.c.value == root_job_id)
            .order_by(jobs.c.created_at)
        )
        rows = self._run(lambda c: c.execute(query).all(), write=False)
        return {str(m): str(j) for m, j in rows}

    def records_between(
        self, job_id: str, start: int, stop: int
    ) -> list[tuple[int, str, Record | None]]:
        """``(index, uri, record or None if pending)`` for indices in ``[start, stop)``."""
        return self._run(lambda c: queries.records_between(c, job_id, start, stop), write=False)

    def records(self, job_id: str, batch: int = 1000) -> Iterator[tuple[int, str, Record | None]]:
        """Yield ``(index, uri, record or None if pending)`` in submission order, streamed."""
        total = self.status(job_id).total
        for start in range(0, total, batch):
            yield from self.records_between(job_id, start, min(total, start + batch))

    def model_of(self, job_id: str) -> str | None:
        """The model id of the job's first stored record (None before any)."""
        query = (
            sa.select(records.c.model)
            .where(records.c.job_id == job_id)
            .order_by(records.c.idx)
            .limit(1)
        )
        return self._run(lambda c: c.scalar(query), write=False)

    def search(self, indices: Sequence[int], **filters: Any) -> Iterator[tuple[str, int, Record]]:
        """Records whose top-3 holds one of ``indices`` (docs: coord SEARCH_API; see queries)."""
        rows = self._run(lambda c: queries.search(c, indices, **filters), write=False)
        for row in rows:
            yield row["job_id"], int(row["idx"]), row_record(row)

    def label_counts(
        self, *, model_id: str | None = None, job_id: str | None = None
    ) -> dict[int, int]:
        """How many ok records hold each class index anywhere in their top-3."""
        return self._run(
            lambda c: queries.label_counts(c, model_id=model_id, job_id=job_id), write=False
        )
