"""Celery task wrappers: arguments, validation, retries. The work is in ``pipeline``.

Task contract v1 (``bulktag.tag_chunk``), JSON:
    args = [job_id: str, items: [[index: int, uri: str], ...], options: {} | null]
The task writes one record per item to the results store and returns a small summary.
``options`` may carry ``round`` (int, set by ``bulktag retry``) and ``split`` (bool, a
URI re-enqueued alone out of a poison chunk); both only rename the chunk's ledger entry.

No URI may vanish (docs/RELIABILITY.md): a chunk ends with its records written, or
goes back to the queue. Redis faults are first retried inside the client (``connect(...,
patient=True)``); if Redis stays away, the chunk's URIs end as ``error`` when the store
takes that write, else the message is requeued. Celery's own retry is not used: it
publishes a copy and acks the original, and publishing fails exactly when Redis is down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Any

import redis
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from tasks import fault_injection, poison
from tasks.chunks import ChunkLedger, chunk_id
from tasks.errors import StoreUnavailable, TransientUriError
from tasks.fetch import fetch_bytes
from tasks.store import ResultStore, connect
from worker import bootstrap, metrics
from worker.app import TASK_TAG_CHUNK, app
from worker.settings import Settings

if TYPE_CHECKING:
    from tasks.inference import Tagger

log = logging.getLogger("bulktag.tasks")

CONTRACT_VERSION = 1

# Faults of the results store/broker itself, as opposed to faults of one URI: any Redis
# error (connection, timeout, OOM under ``noeviction``, MISCONF on a full disk).
STORE_FAULTS = (redis.RedisError, StoreUnavailable)


@cache
def _settings() -> Settings:
    return Settings.from_env()


@cache
def _store() -> ResultStore:
    return ResultStore(connect(_settings().redis_url, patient=True))


@cache
def _ledger() -> ChunkLedger:
    return ChunkLedger(_store().r)


@cache
def _pool() -> ThreadPoolExecutor:
    # Created lazily in the child (after fork): threads do not survive a fork.
    s = _settings()
    return ThreadPoolExecutor(max(s.effective_decode_threads, s.fetch_threads), "bulktag-io")


def _tagger() -> Tagger:
    from tasks import inference  # torch: imported by pool children only, never the parent

    tagger = inference.current()
    if tagger is None:  # not started by `bulktag worker` (e.g. a bare celery worker)
        bootstrap.load_model()
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


@app.task(name=TASK_TAG_CHUNK, bind=True)
def tag_chunk(
    self: Any, job_id: str, items: list[Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Tag one chunk of a job (contract v1).

    Whatever goes wrong, the chunk ends with a record per URI or goes back to the queue:
    with ``acks_late`` an exception escaping here would get the message acknowledged
    (Celery's ``acks_on_failure``) and its URIs would stay pending forever.
    """
    parsed = parse_items(items)
    options = options or {}
    chunk = chunk_id(
        [i for i, _ in parsed], int(options.get("round") or 0), bool(options.get("split"))
    )
    try:
        return _tag_chunk(self.request.id, job_id, parsed, options, chunk)
    except Reject:
        raise
    except STORE_FAULTS as exc:
        return _fail_chunk(job_id, parsed, chunk, exc, store_fault=True)
    except Exception as exc:  # e.g. the model could not be loaded in this process
        log.exception("job %s: chunk %s failed outside the pipeline", job_id, chunk)
        return _fail_chunk(job_id, parsed, chunk, exc, store_fault=False)


def _tag_chunk(
    request_id: str,
    job_id: str,
    parsed: list[tuple[int, str]],
    options: dict[str, Any],
    chunk: str,
) -> dict[str, Any]:
    from tasks import pipeline  # torch: imported by pool children only, never the parent

    started = time.perf_counter()
    store = _store()
    state = store.job_state(job_id)
    if state in ("cancelled", None):
        log.info("job %s %s: skipping chunk of %d", job_id, state or "deleted", len(parsed))
        return {"job": job_id, "skipped": len(parsed)}
    deliveries = _ledger().begin(
        job_id, chunk, host=bootstrap.hostname(), pid=os.getpid(), uris=len(parsed)
    )
    tagger = _tagger()
    if poison.is_poison(deliveries):
        try:
            outcomes = poison.isolate(
                parsed, deliveries, tagger.model_id, lambda one: _send_alone(job_id, one, options)
            )
        except (OperationalError, *STORE_FAULTS) as exc:  # a split half-sent: requeue it all
            raise Reject(exc, requeue=True) from exc
        try:
            store.record_outcomes(job_id, outcomes)
            _ledger().end(job_id, chunk)
        except STORE_FAULTS as exc:
            # Not _fail_chunk: its error records would pre-empt the single-URI chunks
            # just sent. Requeued, this chunk is isolated again (the copies are no-ops).
            raise Reject(exc, requeue=True) from exc
        return {"job": job_id, "poison": len(parsed), "deliveries": deliveries}
    fault_injection.crash_if_marked(parsed, _settings().test_crash_on)
    batches_before = tagger.forward_batches
    try:
        outcomes, report = pipeline.tag_items(
            parsed,
            tagger=tagger,
            store=store,
            settings=_settings(),
            fetch=metrics.timed_fetch(fetch_bytes),
            pool=_pool(),
        )
    except STORE_FAULTS:
        raise  # handled by tag_chunk: the chunk must not be failed for Redis's sake
    except Exception as exc:
        # A bug or a model failure must not make a chunk's URIs vanish: each gets a
        # final error record carrying the reason, and the job still adds up.
        log.exception("job %s: chunk failed as a whole", job_id)
        outcomes, report = pipeline.fail_all(parsed, tagger.model_id, exc)
    store.record_outcomes(job_id, outcomes)
    _ledger().end(job_id, chunk)
    store.worker_counters(
        bootstrap.hostname(),
        os.getpid(),
        chunks=1,
        uris=report.uris,
        forward_images=report.forwarded,
        forward_batches=tagger.forward_batches - batches_before,
        deduped=report.deduped,
        errors=report.error,
    )
    metrics.chunk_done(report, time.perf_counter() - started)
    log.info(
        "job %s chunk %s (%s): %d uris, %d ok, %d error, %d deduped, %d forwarded",
        job_id,
        chunk,
        request_id,
        report.uris,
        report.ok,
        report.error,
        report.deduped,
        report.forwarded,
    )
    return {"job": job_id, **report.__dict__}


def _send_alone(job_id: str, item: list[tuple[int, str]], options: dict[str, Any]) -> None:
    """Publish one URI of a poison chunk as a chunk of its own."""
    app.send_task(
        TASK_TAG_CHUNK,
        args=[job_id, [list(pair) for pair in item], {**options, "split": True}],
        queue=_settings().queue,
    )


def _fail_chunk(
    job_id: str,
    parsed: list[tuple[int, str]],
    chunk: str,
    exc: BaseException,
    *,
    store_fault: bool,
) -> dict[str, Any]:
    """End every URI of the chunk as ``error`` with the reason, or requeue the chunk.

    Store faults reach here after the client's own retries (~30 s): Redis stayed away.

    Raises:
        Reject: (requeue) the error records could not be written either; the message goes
            back to the queue, or, if Redis cannot take even that, stays un-acked and is
            restored after the visibility timeout. Either way the chunk is not lost.
    """
    if store_fault:
        why: BaseException = TransientUriError(
            f"results store unreachable after retrying for ~30 s: {exc}"
        )
    else:
        why = exc
    from tasks import inference, pipeline

    tagger = inference.current()
    try:
        outcomes, _ = pipeline.fail_all(parsed, tagger.model_id if tagger else "unloaded", why)
        _store().record_outcomes(job_id, outcomes)
    except Exception as again:
        log.error("job %s: cannot record the chunk's failure (%s); requeueing it", job_id, again)
        raise Reject(again, requeue=True) from again
    with contextlib.suppress(*STORE_FAULTS):  # best effort: the records are what count
        _ledger().end(job_id, chunk)
    log.error("job %s: %d URIs end as error: %s", job_id, len(parsed), pipeline.reason(why))
    return {"job": job_id, "error": len(parsed), "failure": str(exc)}
