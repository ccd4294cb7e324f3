"""Submit a job: record it in Redis and enqueue its URIs in chunk tasks, streaming.

Tasks are sent by *name* (``bulktag.tag_chunk``) so the producer never imports
torch or the task code.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from producer.job import Job
from producer.sources import iter_sources
from tasks.errors import ConfigError
from tasks.store import ResultStore, connect
from worker.app import TASK_TAG_CHUNK, create_app
from worker.settings import Settings


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def chunked(uris: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(uris)
    while chunk := list(islice(it, size)):
        yield chunk


def submit(
    sources: Iterable[str] | str,
    *,
    job: str | None = None,
    chunk_size: int | None = None,
    settings: Settings | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Job:
    """Enqueue every URI that ``sources`` name as job ``job``; return its handle.

    Args:
        sources: folders, files, ``@list.txt``, ``-`` (stdin) or URIs; one string or many.
        job: the job id (default: a new timestamped id). Must not exist yet.
        chunk_size: URIs per task (default ``BULKTAG_CHUNK_SIZE``).
        settings: explicit settings (default: from the environment).
        on_chunk: called with the running total after each chunk is enqueued.

    Raises:
        ConfigError: the job exists, a source is missing, or nothing was found.
        StoreUnavailable: Redis cannot be reached.
    """
    settings = settings or Settings.from_env()
    size = chunk_size or settings.chunk_size
    if size < 1:
        raise ConfigError("chunk size must be >= 1")
    if isinstance(sources, str):
        sources = [sources]
    sources = list(sources)
    store = ResultStore(connect(settings.redis_url))
    job_id = job or new_job_id()
    if not store.create_job(job_id, size, " ".join(sources)[:500]):
        raise ConfigError(f"job {job_id!r} already exists; pick another --job name")
    app = create_app(settings)
    total = 0
    try:
        with app.producer_or_acquire() as producer:
            for chunk in chunked(iter_sources(sources), size):
                pipe = store.r.pipeline(transaction=True)
                store.add_chunk(pipe, job_id, chunk)
                pipe.execute()
                items = [[total + i, uri] for i, uri in enumerate(chunk)]
                app.send_task(
                    TASK_TAG_CHUNK,
                    args=[job_id, items, {}],
                    queue=settings.queue,
                    producer=producer,
                )
                total += len(chunk)
                if on_chunk:
                    on_chunk(total)
    except BaseException:
        if total == 0:
            store.delete_job(job_id)
        raise
    if total == 0:
        store.delete_job(job_id)
        raise ConfigError(f"no images found in {' '.join(sources)}")
    store.finish_enumeration(job_id)
    return Job(job_id, store)
