"""One chunk, start to finish: ledger, poison check, pipeline, records, counters.

The Celery task (``tasks.tag``) only parses the message and maps failures; this module
runs the chunk with this process's resources (``tasks.process``).

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
import sqlalchemy as sa
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from tasks import fault_injection, instruments, poison, process, recovery
from tasks.chunks import chunk_id
from tasks.contract import ChunkOptions, Item
from tasks.errors import StoreUnavailable, TransientUriError
from tasks.fetch import fetch_bytes

log = logging.getLogger("bulktag.tasks")

# Faults of the results store/broker itself, as opposed to faults of one URI: any Redis
# error (connection, timeout, OOM under ``noeviction``, MISCONF on a full disk) or
# results-database error (the store already retried dropped connections for ~30 s).
STORE_FAULTS = (redis.RedisError, sa.exc.DBAPIError, StoreUnavailable)


@dataclass(frozen=True)
class Chunk:
    """One delivered chunk: its job, items, options and ledger name."""

    job_id: str
    items: list[Item]
    options: ChunkOptions
    request_id: str
    delivery_tag: str | None = None  # kombu's, for dead-worker recovery

    @property
    def name(self) -> str:
        return chunk_id([i for i, _ in self.items], self.options.round, self.options.split)

    @cached_property
    def holding(self) -> recovery.Holding | None:
        """This process's hold on the chunk's message, recorded with the ledger entry so
        a live worker can re-queue the chunk if this worker's main process dies."""
        return recovery.holding_for(self.delivery_tag, self.job_id, self.name, process.hostname())


def run_chunk(chunk: Chunk, send_alone: Callable[[list[Item]], None]) -> dict[str, Any]:
    """Tag ``chunk`` and store a final record per URI; returns a small summary.

    Args:
        chunk: the parsed message.
        send_alone: publishes one URI of a poison chunk as a chunk of its own.

    Raises:
        Reject: (requeue) the chunk must go back to the queue.
        redis.RedisError, StoreUnavailable: the store failed (the task ends the chunk).
    """
    started = time.perf_counter()
    store, ledger = process.store(), process.ledger()
    state = store.job_state(chunk.job_id)
    # A done job already holds a record for every URI: a late duplicate has nothing to add
    # (and must not re-create the ended job's chunk ledger in Redis).
    if state in ("cancelled", "done", None):
        log.info(
            "job %s %s: skipping chunk of %d", chunk.job_id, state or "deleted", len(chunk.items)
        )
        store.worker_counters(process.hostname(), os.getpid(), skipped_chunks=1)
        return {"job": chunk.job_id, "skipped": len(chunk.items)}
    deliveries = ledger.begin(
        chunk.job_id,
        chunk.name,
        host=process.hostname(),
        pid=os.getpid(),
        uris=len(chunk.items),
        holding=chunk.holding,
    )
    tagger = process.tagger()
    if poison.is_poison(deliveries):
        return _isolate_poison(chunk, deliveries, tagger.model_id, send_alone)
    fault_injection.crash_if_marked(chunk.items, process.settings().test_crash_on)
    from tasks import pipeline  # torch: imported by pool children only, never the parent

    batches_before = tagger.forward_batches
    try:
        outcomes, report = pipeline.tag_items(
            chunk.items,
            tagger=tagger,
            store=store,
            settings=process.settings(),
            fetch=instruments.timed_fetch(fetch_bytes),
            pool=process.io_pool(),
        )
    except STORE_FAULTS:
        raise  # handled by the task: the chunk must not be failed for Redis's sake
    except Exception as exc:
        # A bug or a model failure must not make a chunk's URIs vanish: each gets a
        # final error record carrying the reason, and the job still adds up.
        log.exception("job %s: chunk failed as a whole", chunk.job_id)
        outcomes, report = pipeline.fail_all(chunk.items, tagger.model_id, exc)
    store.record_outcomes(chunk.job_id, outcomes)
    ledger.end(chunk.job_id, chunk.name, chunk.holding)
    store.worker_counters(
        process.hostname(),
        os.getpid(),
        chunks=1,
        uris=report.uris,
        forward_images=report.forwarded,
        forward_batches=tagger.forward_batches - batches_before,
        deduped=report.deduped,
        errors=report.error,
    )
    instruments.chunk_done(report, time.perf_counter() - started)
    log.info(
        "job %s chunk %s (%s): %d uris, %d ok, %d error, %d deduped, %d forwarded",
        chunk.job_id,
        chunk.name,
        chunk.request_id,
        report.uris,
        report.ok,
        report.error,
        report.deduped,
        report.forwarded,
    )
    return {"job": chunk.job_id, **report.__dict__}


def _isolate_poison(
    chunk: Chunk, deliveries: int, model_id: str, send_alone: Callable[[list[Item]], None]
) -> dict[str, Any]:
    """Split a chunk that killed its worker on every delivery (``tasks.poison``)."""
    try:
        outcomes = poison.isolate(chunk.items, deliveries, model_id, send_alone)
    except (OperationalError, *STORE_FAULTS) as exc:  # a split half-sent: requeue it all
        raise Reject(exc, requeue=True) from exc
    try:
        process.store().record_outcomes(chunk.job_id, outcomes)
        process.ledger().end(chunk.job_id, chunk.name, chunk.holding)
    except STORE_FAULTS as exc:
        # Not fail_chunk: its error records would pre-empt the single-URI chunks
        # just sent. Requeued, this chunk is isolated again (the copies are no-ops).
        raise Reject(exc, requeue=True) from exc
    return {"job": chunk.job_id, "poison": len(chunk.items), "deliveries": deliveries}


def fail_chunk(chunk: Chunk, exc: BaseException, *, store_fault: bool) -> dict[str, Any]:
    """End every URI of the chunk as ``error`` with the reason, or requeue the chunk.

    Store faults reach here after the client's own retries (~30 s): Redis stayed away.

    Raises:
        Reject: (requeue) the error records could not be written either; the message goes
            back to the queue, or, if Redis cannot take even that, stays un-acked and is
            restored after the visibility timeout. Either way the chunk is not lost.
    """
    why: BaseException = exc
    if store_fault:
        why = TransientUriError(f"results store unreachable after retrying for ~30 s: {exc}")
    from tasks import inference, pipeline

    tagger = inference.current()
    try:
        outcomes, _ = pipeline.fail_all(chunk.items, tagger.model_id if tagger else "unloaded", why)
        process.store().record_outcomes(chunk.job_id, outcomes)
    except Exception as again:
        log.error(
            "job %s: cannot record the chunk's failure (%s); requeueing it", chunk.job_id, again
        )
        raise Reject(again, requeue=True) from again
    with contextlib.suppress(*STORE_FAULTS):  # best effort: the records are what count
        process.ledger().end(chunk.job_id, chunk.name, chunk.holding)
    log.error(
        "job %s: %d URIs end as error: %s", chunk.job_id, len(chunk.items), pipeline.reason(why)
    )
    return {"job": chunk.job_id, "error": len(chunk.items), "failure": str(exc)}
