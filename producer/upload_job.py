"""Uploaded files as one small job on the interactive lane; pruning of upload files.

The job is an ordinary job (same records, counts, dedupe, ``results``, ``retry``): each
stored image is a local URI under ``BULKTAG_UPLOAD_DIR`` sent to workers on the high
lane (``worker.queues``). A part that was not stored (not an image, over the size cap)
has no file a worker could read, so its error record is written here, at once, with the
reason, under the URI ``upload:<filename>``; it still counts in the job like any other
error, and the job ends when the workers have written the rest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from producer.submit import chunked, new_job_id
from producer.upload_store import PruneReport, ReceivedFile, UploadStore
from tasks import keys
from tasks.contract import send_tag_chunk
from tasks.errors import JobExists, JobNotFound
from tasks.model_registry import ModelRegistry
from tasks.records import Record
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from worker.queues import lane_queue

log = logging.getLogger("bulktag.uploads")

# Images per chunk of an upload job: small, so that the processes of a worker share a
# multi-photo upload instead of one process tagging all of it.
UPLOAD_CHUNK_SIZE = 4
UNSTORED_SCHEME = "upload:"
# The API prunes the upload folder at most this often (seconds), one process at a time.
PRUNE_INTERVAL = 3600
DAY = 86400.0


def submit_upload(
    received: Sequence[ReceivedFile],
    *,
    store: ResultStore,
    app: Any,
    settings: Settings,
    job_id: str | None = None,
) -> str:
    """Create the job for ``received`` (in order: item i is URI i) and enqueue its images.

    Args:
        received: the request's files, stored or refused.
        store: the result store.
        app: the Celery app to publish with (the caller keeps one).
        settings: queue names and chunking.
        job_id: the job id (default: a new timestamped id).

    Returns:
        The job id.

    Raises:
        JobExists: ``job_id`` is taken.
    """
    job_id = job_id or new_job_id()
    label = "upload: " + ", ".join(r.filename for r in received)
    if not store.create_job(job_id, UPLOAD_CHUNK_SIZE, label[:500]):
        raise JobExists(f"job {job_id!r} already exists")
    store.annotate_job(job_id, priority="high", kind="upload")
    uris = [str(r.path) if r.path else f"{UNSTORED_SCHEME}{r.filename}" for r in received]
    images = [(i, uri) for i, (r, uri) in enumerate(zip(received, uris, strict=True)) if r.path]
    store.add_uris(job_id, 0, list(chunked(uris, 1000)))
    store.r.zadd(keys.upload_jobs(), {job_id: time.time()})
    refused = [(i, r) for i, r in enumerate(received) if r.path is None]
    if refused:
        model = ModelRegistry(store.r).current() or "none"
        store.record_outcomes(
            job_id,
            [
                (i, Record(uris[i], r.sha256, "error", r.error, None, model), False)
                for i, r in refused
            ],
        )
    queue = lane_queue(settings.queue, "high")
    with app.producer_or_acquire() as producer:
        for chunk in chunked(images, UPLOAD_CHUNK_SIZE):
            send_tag_chunk(app, job_id, chunk, queue=queue, producer=producer)
    store.finish_enumeration(job_id)  # ends the job now if every part was refused
    return job_id


def referenced_uploads(store: ResultStore) -> set[str]:
    """URIs of every upload job still stored; jobs deleted since are forgotten."""
    referenced: set[str] = set()
    gone: list[str] = []
    for job_id in store.r.zrange(keys.upload_jobs(), 0, -1):
        if store.job_state(str(job_id)) is None:
            gone.append(str(job_id))
            continue
        with contextlib.suppress(JobNotFound):  # deleted since: its files are free
            referenced.update(store.iter_uris(str(job_id)))
    if gone:
        store.r.zrem(keys.upload_jobs(), *gone)
    return referenced


def prune_uploads(settings: Settings, older_than_days: float | None = None) -> PruneReport:
    """Remove upload files older than ``older_than_days`` that no stored job uses.

    The hook retention calls (``bulktag uploads prune``; ``bulktag prune`` should call
    it too): once a job is deleted, its files go at the next pass after they age out.

    Args:
        settings: where Redis and the upload folder are.
        older_than_days: age limit (default ``BULKTAG_UPLOAD_RETENTION_DAYS``).
    """
    days = settings.upload_retention_days if older_than_days is None else older_than_days
    store = ResultStore(connect(settings.redis_url))
    try:
        referenced = referenced_uploads(store)
        report = UploadStore(settings.upload_dir).prune(
            days * DAY, lambda path: str(path) in referenced
        )
    finally:
        store.r.close()
    if report.removed:
        log.info(
            "pruned %d upload files (%d bytes) older than %g days; %d kept",
            report.removed,
            report.freed_bytes,
            days,
            report.kept,
        )
    return report


def maybe_prune_in_background(settings: Settings, store: ResultStore) -> None:
    """Start a pruning pass in a thread if no API process ran one in the last hour.

    Called after each upload, so the folder is bounded even where nobody schedules
    ``bulktag uploads prune``; a Redis lock with a TTL makes it one pass per interval.
    """
    with contextlib.suppress(redis.RedisError):
        if not store.r.set(keys.upload_prune_lock(), "1", nx=True, ex=PRUNE_INTERVAL):
            return

        def run() -> None:
            try:
                prune_uploads(settings)
            except Exception:  # a background chore must not die loudly or silently
                log.exception("pruning the upload folder failed")

        threading.Thread(target=run, name="upload-prune", daemon=True).start()
