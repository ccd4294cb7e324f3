"""The wire contract (v1): task names, the message args, and their one builder and parser.

Everything that crosses the broker is defined here and nowhere else: the producer
(``producer.submit``), ``bulktag retry`` (``producer.resubmit``), a poison chunk's split
(``tasks.tag``) and beat (``producer.schedules``) all send through ``send_tag_chunk`` /
``TASK_RUN_SCHEDULE``, and the task parses with ``parse_items`` / ``parse_options``.
docs/TASK_CONTRACT.md is written from this module; ``tests/unit/test_contract.py`` keeps
the two in step and sends a hand-built message (no bulktag import) through a worker.

A leaf module: it imports nothing of bulktag, so any layer may use it.

``bulktag.tag_chunk``, JSON only::

    args = [job_id: str, items: [[index: int, uri: str], ...], options: {} | null]

``options`` may carry ``round`` (int >= 0, set by ``bulktag retry``) and ``split`` (bool,
a URI re-sent alone out of a poison chunk); both only rename the chunk's ledger entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CONTRACT_VERSION = 1
TASK_TAG_CHUNK = "bulktag.tag_chunk"
TASK_RUN_SCHEDULE = "bulktag.run_schedule"
# Options a tag_chunk message may carry; anything else is ignored (forward compatible).
OPTION_KEYS = ("round", "split")

Item = tuple[int, str]


def schedule_queue(queue: str) -> str:
    """The queue ``bulktag beat`` sends its runs to (and consumes) for work queue ``queue``."""
    return f"{queue}.schedules"


@dataclass(frozen=True)
class ChunkOptions:
    """The parsed ``options`` of a ``bulktag.tag_chunk`` message."""

    round: int = 0
    split: bool = False

    def to_json(self) -> dict[str, Any]:
        """The options as sent: only what differs from the defaults."""
        out: dict[str, Any] = {}
        if self.round:
            out["round"] = self.round
        if self.split:
            out["split"] = True
        return out


def tag_chunk_args(
    job_id: str, items: Sequence[Item], options: ChunkOptions | None = None
) -> list[Any]:
    """The ``args`` of one ``bulktag.tag_chunk`` message (contract v1)."""
    return [job_id, [[index, uri] for index, uri in items], (options or ChunkOptions()).to_json()]


def send_tag_chunk(
    app: Any,
    job_id: str,
    items: Sequence[Item],
    options: ChunkOptions | None = None,
    *,
    queue: str,
    producer: Any = None,
) -> None:
    """Publish one ``bulktag.tag_chunk`` message by name on ``app`` (a Celery app).

    Args:
        app: the Celery app to publish with (the producer's, or a task's ``self.app``).
        job_id: the job the items belong to; its record must already exist.
        items: ``(index, uri)`` pairs.
        options: the chunk's options (retry round, poison split).
        queue: the broker queue.
        producer: a kombu producer to reuse (a publish batch), or None.
    """
    args = tag_chunk_args(job_id, items, options)
    span = f"{items[0][0]}..{items[-1][0]}" if items else "none"
    app.send_task(
        TASK_TAG_CHUNK,
        args=args,
        queue=queue,
        producer=producer,
        # Celery would otherwise saferepr() the whole item list into a header for
        # monitoring, which costs more than the rest of the publish put together.
        argsrepr=f"[{job_id!r}, <{len(items)} items {span}>, {args[2]!r}]",
        kwargsrepr="{}",
    )


def parse_items(items: Any) -> list[Item]:
    """Validate the contract's ``items``.

    Raises:
        ValueError: not a list of ``[int, str]`` pairs (the task rejects the message).
    """
    if not isinstance(items, list):
        raise ValueError("items must be a list of [index, uri] pairs")
    parsed = []
    for item in items:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], int)
            or isinstance(item[0], bool)
            or not isinstance(item[1], str)
        ):
            raise ValueError(f"bad item {item!r}: expected [index, uri]")
        parsed.append((item[0], item[1]))
    return parsed


def parse_options(options: Any) -> ChunkOptions:
    """Validate the contract's ``options`` (``{}`` or null for none).

    Raises:
        ValueError: not an object, or ``round``/``split`` of the wrong type.
    """
    if options is None:
        return ChunkOptions()
    if not isinstance(options, dict):
        raise ValueError("options must be an object or null")
    round_ = options.get("round") or 0
    split = options.get("split") or False
    if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
        raise ValueError(f"options.round must be an integer >= 0, got {round_!r}")
    if not isinstance(split, bool):
        raise ValueError(f"options.split must be true or false, got {split!r}")
    return ChunkOptions(round=round_, split=split)
