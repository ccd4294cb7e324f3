"""Poison chunks: a chunk that kills its worker process on every delivery.

With late acks and ``task_reject_on_worker_lost`` Celery puts a chunk back on the queue
when the pool process running it dies (a decoder segfault, the kernel's OOM killer, the
hard time limit), which is right once and an endless crash loop for an input that
kills every process it touches. After ``MAX_DELIVERIES`` unfinished deliveries the
chunk is split URI by URI: each neighbour is re-enqueued alone (and tagged), and a
single URI that reaches the limit on its own ends as ``error`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tasks.records import Record

if TYPE_CHECKING:
    from tasks.pipeline import Outcome

log = logging.getLogger(__name__)

# Deliveries a chunk may start without finishing before it is split (or, for a single
# URI, given up on). Three tolerates a worker killed by an operator or a one-off OOM.
MAX_DELIVERIES = 3

Items = Sequence[tuple[int, str]]


def is_poison(deliveries: int) -> bool:
    """True when earlier deliveries of this chunk all died (``deliveries`` includes this one)."""
    return deliveries > MAX_DELIVERIES


def poison_reason(deliveries: int) -> str:
    """The error recorded for a URI that killed its worker on every delivery."""
    return (
        f"worker process died {deliveries - 1} times while processing this URI "
        "(crash, out-of-memory kill or time limit); not retried again"
    )


def isolate(
    items: Items,
    deliveries: int,
    model_id: str,
    send_alone: Callable[[list[tuple[int, str]]], None],
) -> list[Outcome]:
    """Deal with a poison chunk without running it again.

    Args:
        items: the chunk's ``(index, uri)`` pairs.
        deliveries: this chunk's delivery count, this delivery included.
        model_id: the model id to put in an error record.
        send_alone: publishes one single-URI chunk (``[(index, uri)]``).

    Returns:
        Error outcomes to store: one for a single-URI chunk, none after a split (each
        URI then runs, and if need be dies, on its own).
    """
    if len(items) == 1:
        index, uri = items[0]
        log.error("giving up on %s after %d deliveries: it kills its worker", uri, deliveries)
        record = Record(uri, None, "error", poison_reason(deliveries), None, model_id)
        return [(index, record, False)]
    log.error(
        "chunk of %d URIs started %d times without finishing: re-enqueuing it URI by URI",
        len(items),
        deliveries,
    )
    for item in items:
        send_alone([item])
    return []
