"""``bulktag retry``: enqueue a finished job's failed (or never-finished) URIs again.

Order matters. For each chunk the error records are first reopened (deleted and
un-counted atomically, ``ResultStore.reopen_errors``), then the chunk is published. The
other order could let a fast worker meet the old error record, skip it (HSETNX), and
leave the URI pending once it is reopened. If the producer dies between the two steps
the reopened URIs are simply pending: ``bulktag retry JOB --pending`` enqueues them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from producer.submit import chunked
from tasks.contract import ChunkOptions, send_tag_chunk
from tasks.errors import ConfigError
from tasks.settings import Settings
from tasks.store import ResultStore, open_store
from worker.app import create_app
from worker.queues import lane_queue


@dataclass(frozen=True)
class RetryReport:
    """What one ``retry_job`` call enqueued."""

    job: str
    round: int
    errors: int  # error records reopened
    pending: int  # URIs without a record, enqueued again
    chunks: int


def _selected(
    store: ResultStore, job_id: str, errors: bool, pending: bool
) -> Iterator[tuple[int, str, bool]]:
    """``(index, uri, is_error)`` for every URI the retry covers, in job order."""
    for index, uri, record in store.records(job_id):
        if record is None and pending:
            yield index, uri, False
        elif record is not None and record.status == "error" and errors:
            yield index, uri, True


def retry_job(
    job_id: str,
    *,
    errors: bool = True,
    pending: bool = False,
    chunk_size: int | None = None,
    settings: Settings | None = None,
) -> RetryReport:
    """Enqueue job ``job_id``'s error URIs (and/or pending ones) in fresh chunks.

    Args:
        job_id: an existing job, not cancelled and fully submitted.
        errors: retry the URIs whose record is an error (it is replaced).
        pending: enqueue URIs that have no record yet (after lost messages; a copy of
            a chunk still queued just writes nothing twice).
        chunk_size: URIs per chunk (default: the job's own chunk size).
        settings: explicit settings (default: from the environment).

    Returns:
        Counts of what was enqueued, and the retry round number.

    Raises:
        JobNotFound: no such job.
        ConfigError: the job was cancelled, is still being submitted, or nothing was asked.
        StoreUnavailable: Redis cannot be reached.
    """
    if not (errors or pending):
        raise ConfigError("nothing to retry: pass --errors and/or --pending")
    settings = settings or Settings.from_env()
    store = open_store(settings)
    status = store.status(job_id)
    if status.state == "cancelled":
        raise ConfigError(f"job {job_id} was cancelled; submit its URIs as a new job instead")
    if status.state == "enumerating":
        raise ConfigError(f"job {job_id} is still being submitted; retry once it is running")
    size = chunk_size or status.chunk_size or settings.chunk_size
    round_ = store.begin_retry_round(job_id)
    # Back to the job's own lane: an upload's retried URIs stay interactive.
    queue = lane_queue(settings.queue, store.job_field(job_id, "priority") or "normal")
    app = create_app(settings)
    reopened = enqueued_pending = chunks = 0
    with app.producer_or_acquire() as producer:
        for chunk in chunked(_selected(store, job_id, errors, pending), size):
            reopened += store.reopen_errors(job_id, [i for i, _, is_error in chunk if is_error])
            enqueued_pending += sum(1 for *_, is_error in chunk if not is_error)
            send_tag_chunk(
                app,
                job_id,
                [(i, uri) for i, uri, _ in chunk],
                ChunkOptions(round=round_),
                queue=queue,
                producer=producer,
            )
            chunks += 1
    return RetryReport(job_id, round_, reopened, enqueued_pending, chunks)
