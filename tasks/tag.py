"""The ``bulktag.tag_chunk`` Celery task: parse the message, run the chunk, map failures.

Thin on purpose (Celery's guidance): the message format is ``tasks.contract``'s, the work
is ``tasks.runner.run_chunk``. Registered with ``shared_task``, so this module needs no
app: the worker's app (``worker.app``) includes it by name, and a split poison chunk is
sent through ``self.app``.

A message that breaks the contract is rejected (not requeued): retrying cannot mend it.
Whatever else goes wrong, the chunk ends with a record per URI or goes back to the
queue: with ``acks_late`` an exception escaping here would get the message acknowledged
(Celery's ``acks_on_failure``) and its URIs would stay pending forever.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import Reject

from tasks import process, recovery
from tasks.contract import (
    TASK_TAG_CHUNK,
    ChunkOptions,
    Item,
    parse_items,
    parse_options,
    send_tag_chunk,
)
from tasks.runner import STORE_FAULTS, Chunk, fail_chunk, run_chunk

log = logging.getLogger("bulktag.tasks")


@shared_task(name=TASK_TAG_CHUNK, bind=True)
def tag_chunk(
    self: Any, job_id: str, items: list[Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Tag one chunk of a job (contract v1, ``tasks.contract``)."""
    try:
        if not isinstance(job_id, str) or not job_id:
            raise ValueError(f"job_id must be a non-empty string, got {job_id!r}")
        chunk = Chunk(
            job_id,
            parse_items(items),
            parse_options(options),
            self.request.id,
            recovery.delivery_tag(self.request),
        )
    except ValueError as exc:
        log.error("rejected a malformed tag_chunk message: %s", exc)
        raise Reject(str(exc), requeue=False) from exc

    # A poison chunk's URIs are re-sent alone to the lane this chunk came from
    # (the bulk queue or the interactive one, worker.queues).
    queue = (self.request.delivery_info or {}).get("routing_key") or process.settings().queue

    def send_alone(one: list[Item]) -> None:
        split = ChunkOptions(round=chunk.options.round, split=True)
        send_tag_chunk(self.app, job_id, one, split, queue=queue)

    try:
        return run_chunk(chunk, send_alone)
    except Reject:
        raise
    except STORE_FAULTS as exc:
        return fail_chunk(chunk, exc, store_fault=True)
    except Exception as exc:  # e.g. the model could not be loaded in this process
        log.exception("job %s: chunk %s failed outside the pipeline", job_id, chunk.name)
        return fail_chunk(chunk, exc, store_fault=False)
