"""Celery task wrappers: arguments, validation, retries. The work is in ``pipeline``.

Task contract v1 (``bulktag.tag_chunk``), JSON:
    args = [job_id: str, items: [[index: int, uri: str], ...], options: {} | null]
The task writes one record per item to the results store and returns a small summary.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import redis

from tasks import inference, pipeline
from tasks.fetch import fetch_bytes
from tasks.store import ResultStore, connect
from worker import bootstrap
from worker.app import TASK_TAG_CHUNK, app
from worker.settings import Settings

log = logging.getLogger("bulktag.tasks")

CONTRACT_VERSION = 1


@cache
def _settings() -> Settings:
    return Settings.from_env()


@cache
def _store() -> ResultStore:
    return ResultStore(connect(_settings().redis_url))


@cache
def _pool() -> ThreadPoolExecutor:
    # Created lazily in the child (after fork): threads do not survive a fork.
    s = _settings()
    return ThreadPoolExecutor(max(s.effective_decode_threads, s.fetch_threads), "bulktag-io")


def _tagger() -> inference.Tagger:
    tagger = inference.current()
    if tagger is None:  # not started by `bulktag worker` (e.g. a bare celery worker)
        bootstrap.load_model_in_child()
        tagger = inference.current()
    assert tagger is not None
    return tagger


def parse_items(items: Any) -> list[tuple[int, str]]:
    """Validate the contract's ``items``; a malformed message is rejected, not retried."""
    if not isinstance(items, list):
        raise ValueError("items must be a list of [index, uri] pairs")
    parsed = []
    for item in items:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], int)
            or not isinstance(item[1], str)
        ):
            raise ValueError(f"bad item {item!r}: expected [index, uri]")
        parsed.append((item[0], item[1]))
    return parsed


@app.task(
    name=TASK_TAG_CHUNK,
    bind=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=10,
)
def tag_chunk(
    self: Any, job_id: str, items: list[Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Tag one chunk of a job (contract v1)."""
    parsed = parse_items(items)
    store = _store()
    if store.job_state(job_id) == "cancelled":
        log.info("job %s cancelled: skipping chunk of %d", job_id, len(parsed))
        return {"job": job_id, "skipped": len(parsed)}
    tagger = _tagger()
    try:
        outcomes, report = pipeline.tag_items(
            parsed,
            tagger=tagger,
            store=store,
            settings=_settings(),
            fetch=fetch_bytes,
            pool=_pool(),
        )
    except (redis.ConnectionError, redis.TimeoutError):
        raise  # transient: Celery retries the chunk with backoff
    except Exception as exc:
        # A bug or a model failure must not make a chunk's URIs vanish: each gets a
        # final error record carrying the reason, and the job still adds up.
        log.exception("job %s: chunk failed as a whole", job_id)
        outcomes, report = pipeline.fail_all(parsed, tagger.model_id, exc)
    store.record_outcomes(job_id, outcomes)
    store.worker_counters(
        bootstrap.hostname(),
        os.getpid(),
        chunks=1,
        uris=report.uris,
        forward_images=report.forwarded,
        forward_batches=-(-report.forwarded // _settings().batch_size),
        deduped=report.deduped,
        errors=report.error,
    )
    log.info(
        "job %s chunk %s: %d uris, %d ok, %d error, %d deduped, %d forwarded",
        job_id,
        self.request.id,
        report.uris,
        report.ok,
        report.error,
        report.deduped,
        report.forwarded,
    )
    return {"job": job_id, **report.__dict__}
