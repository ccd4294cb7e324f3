"""The two lanes of work: an interactive (``high``) queue that workers drain first.

Uploads and jobs submitted with ``priority="high"`` go to ``<BULKTAG_QUEUE>.high``;
bulk work stays on ``<BULKTAG_QUEUE>``. Workers consume both, high first, through
kombu's own Redis mechanism rather than a home-made scheduler: with the transport
option ``queue_order_strategy="priority"`` kombu keeps the order of the queue keys it
hands to Redis' ``BRPOP`` fixed, and ``BRPOP`` pops from the first non-empty key. So
whenever a worker process becomes free, a waiting high chunk is taken before any bulk
chunk, however many bulk chunks are queued.

Why a separate queue rather than kombu message priorities: a second list is visible
as itself (``LLEN bulktag.high``, Flower, backpressure on the bulk queue only), while
kombu priorities spread one queue over hidden ``queue\\x06\\x16N`` lists and the
"queue length" every tool reads would miss them.

Limits (docs/OPERATIONS.md): a chunk already running is never pre-empted, so a high
chunk waits at most for the shortest remaining bulk chunk among the worker's busy
processes; with ``worker_prefetch_multiplier=1`` and late acks no bulk chunk sits
reserved in front of it. A worker started by hand with ``celery -Q`` must name both
queues, high first.

Leaf module: imports nothing of bulktag but its errors.
"""

from __future__ import annotations

from typing import Final, Literal

from tasks.errors import ConfigError

Priority = Literal["normal", "high"]
PRIORITIES: Final = ("normal", "high")
HIGH_SUFFIX: Final = ".high"

# kombu Redis transport option: always BRPOP the queues in the order the worker lists
# them (its default, round_robin, rotates the order after each message).
QUEUE_ORDER_STRATEGY: Final = "priority"


def check_priority(priority: str) -> Priority:
    """``priority`` as a lane name.

    Raises:
        ConfigError: not ``normal`` or ``high``.
    """
    if priority == "high":
        return "high"
    if priority == "normal":
        return "normal"
    raise ConfigError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")


def lane_queue(queue: str, priority: str) -> str:
    """The broker queue of ``priority`` work for the base queue name ``queue``."""
    return queue + HIGH_SUFFIX if check_priority(priority) == "high" else queue


def consumed_queues(queue: str) -> list[str]:
    """The queues a worker of base queue ``queue`` consumes, in the order it drains them."""
    return [lane_queue(queue, "high"), queue]
