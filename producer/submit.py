"""Submit a job: record it in the results database and enqueue its URIs in chunk tasks.

Tasks are sent by *name* (``bulktag.tag_chunk``) so the producer never imports
torch or the task code.

At scale (millions of URIs) the producer holds one publish batch in memory at a
time: about ``PUBLISH_BATCH_URIS`` URIs, split into chunks. Each batch costs two
Redis round trips, one MULTI for the job's bookkeeping and one pipeline of chunk
messages (kombu's ``Producer.batch``), instead of two per chunk. The bookkeeping
goes first so a worker never sees a chunk the job does not count yet. Batches start at
one chunk and double: workers get the first chunk as soon as it is enumerated, not
after the first ~1,000 URIs (~60 ms for a local folder of 480 photos).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

import redis
import sqlalchemy as sa
from kombu.exceptions import BatchPublishError

from producer.backpressure import QueueGate
from producer.job import Job
from producer.sources import Selection, iter_sources
from tasks import keys
from tasks.contract import send_tag_chunk
from tasks.errors import ConfigError, JobExists, StoreUnavailable
from tasks.settings import Settings
from tasks.store import open_store
from worker.app import create_app
from worker.queues import check_priority, lane_queue

# URIs per publish batch: big enough that round trips stop mattering (~30 chunks of
# 32), small enough that a slow source (an S3 listing, a pipe) still flows steadily.
PUBLISH_BATCH_URIS = 1024

T = TypeVar("T")


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items (the last may be shorter), streamed."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def growing(items: Iterable[T], limit: int, start: int = 1) -> Iterator[list[T]]:
    """Lists of ``start``, twice that, ... consecutive items, at most ``limit``, streamed."""
    it, size = iter(items), min(start, limit)
    while batch := list(islice(it, size)):
        yield batch
        size = min(limit, size * 2)


def submit(
    sources: Iterable[str] | str,
    *,
    job: str | None = None,
    chunk_size: int | None = None,
    settings: Settings | None = None,
    on_chunk: Callable[[int], None] | None = None,
    max_queued: int | None = None,
    on_wait: Callable[[int], None] | None = None,
    uris: Iterable[str] | None = None,
    selection: Selection | None = None,
    priority: str = "normal",
) -> Job:
    """Enqueue every URI that ``sources`` name as job ``job``; return its handle.

    Args:
        sources: folders, files, ``@list.txt``, ``-`` (stdin) or URIs; one string or many.
        job: the job id (default: a new timestamped id). Must not exist yet.
        chunk_size: URIs per task (default ``BULKTAG_CHUNK_SIZE``).
        settings: explicit settings (default: from the environment).
        on_chunk: called with the running total after each publish batch is enqueued.
        max_queued: most chunk messages allowed to wait in the broker queue; the
            producer sleeps while it is full (default ``BULKTAG_MAX_QUEUED``; 0 = no cap).
        on_wait: called with the queue length whenever backpressure makes it wait.
        uris: URIs already resolved (reprocess, scheduled runs): enqueued as they are,
            and ``sources`` only labels the job.
        selection: what folder walks and S3 listings take (``--include-ext``); it
            counts the files they skip, which the job records as ``skipped`` (default:
            the image kinds).
        priority: ``"high"`` sends the chunks to the interactive lane that workers
            drain before bulk work (``worker.queues``); ``"normal"`` is the bulk queue.

    Raises:
        ConfigError: the job exists, a source is missing, nothing was found, or the
            job was cancelled while it was being submitted.
        StoreUnavailable: Redis or the results database cannot be reached.
    """
    settings = settings or Settings.from_env()
    queue = lane_queue(settings.queue, check_priority(priority))
    size = settings.chunk_size if chunk_size is None else chunk_size
    if size < 1:
        raise ConfigError("chunk size must be >= 1")
    cap = settings.max_queued if max_queued is None else max_queued
    if cap < 0:
        raise ConfigError(f"max queued must be >= 0 (0 = no cap), got {cap}")
    if isinstance(sources, str):
        sources = [sources]
    sources = list(sources)
    store = open_store(settings)
    job_id = job or new_job_id()
    if not re.fullmatch(keys.JOB_ID_PATTERN, job_id):
        raise ConfigError(
            f"bad job id {job_id!r}: use 1-100 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    if not store.create_job(job_id, size, " ".join(sources)[:500]):
        raise JobExists(f"job {job_id!r} already exists; pick another --job name")
    if priority == "high":  # `retry` sends the job's chunks back to the same lane
        store.annotate_job(job_id, priority=priority)
    app = create_app(settings)
    per_batch = max(1, PUBLISH_BATCH_URIS // size)
    gate = None
    if cap:
        per_batch = min(per_batch, cap)  # a batch must fit under the cap by itself
        gate = QueueGate(store.r, queue, cap, on_wait=on_wait)
    total = 0
    selection = selection or Selection()
    try:
        with app.producer_or_acquire() as producer:
            stream = (
                iter_sources(sources, settings=settings, selection=selection)
                if uris is None
                else uris
            )
            # Under --max-queued, full batches from the start: the gate admits a batch
            # only when all of it fits, so growing ones would stop below the cap.
            first_batch = per_batch if gate is not None else 1
            for batch in growing(chunked(stream, size), per_batch, first_batch):
                if gate is not None:
                    gate.wait_for_room(len(batch), store=store, job_id=job_id)
                store.add_uris(job_id, total, batch, skipped=selection.total)
                # kombu publishes the batch when the block exits cleanly and drops it on
                # an exception, so the batch counts as sent only after the block.
                first = total
                try:
                    with producer.batch(max_size=len(batch)):
                        for chunk in batch:
                            items = list(enumerate(chunk, start=first))
                            send_tag_chunk(app, job_id, items, queue=queue, producer=producer)
                            first += len(chunk)
                except BatchPublishError as exc:
                    # Part of the batch may be queued: the job is cut back to ``total``
                    # below, and the store ignores records of indices outside the job.
                    cause = exc.__cause__ or exc
                    why = str(cause).rsplit("caused error: ", 1)[-1]  # not the whole pipeline
                    raise StoreUnavailable(
                        f"Redis refused the chunk messages ({type(cause).__name__}: {why}) "
                        f"job {job_id} keeps the {total} URIs queued before"
                    ) from exc
                total = first
                if on_chunk:
                    on_chunk(total)
                if store.job_state(job_id) == "cancelled":
                    raise ConfigError(f"job {job_id} was cancelled; stopped after {total} URIs")
    except BaseException as exc:
        # best effort: Redis or the database may be the fault
        with contextlib.suppress(redis.RedisError, sa.exc.SQLAlchemyError, StoreUnavailable):
            if total == 0:
                store.delete_job(job_id)
            elif store.job_state(job_id) == "enumerating":
                why = f"submission stopped after {total} URIs: {type(exc).__name__}: {exc}"
                store.abort_enumeration(job_id, total, why)
        raise
    if total == 0:
        store.delete_job(job_id)
        skipped = selection.summary()
        raise ConfigError(
            f"no images found in {' '.join(sources)}" + (f" ({skipped})" if skipped else "")
        )
    store.note_skipped(job_id, selection.total)  # files after the last batch
    store.finish_enumeration(job_id)
    return Job(job_id, store, existed=True)
