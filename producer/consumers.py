"""Is any worker consuming the queue? ``submit --wait`` says so when none is.

A job submitted to a queue no worker reads (no worker started, a typo in
``BULKTAG_QUEUE``, workers on another Redis) would otherwise wait silently until its
timeout. When a wait sees no progress for ``ASK_AFTER`` seconds it asks the workers
(Celery's ``inspect active_queues`` broadcast, answered by each live worker's main
process within ``INSPECT_TIMEOUT``) which queues they consume, and says once when none
consumes this one, and once when one does again. It keeps waiting either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tasks.records import JobStatus

log = logging.getLogger("bulktag.consumers")

ASK_AFTER = 3.0  # seconds without progress before asking (a worker's first chunk is ~1 s)
ASK_EVERY = 10.0  # seconds between two questions while there is still no progress
INSPECT_TIMEOUT = 1.0  # seconds live workers get to answer


def consumers_of(app: Any, queue: str, timeout: float = INSPECT_TIMEOUT) -> list[str]:
    """Names of the live workers consuming ``queue`` (empty: none answered with it)."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return sorted(
        worker
        for worker, queues in replies.items()
        if any(q.get("name") == queue for q in queues or [])
    )


class ConsumerWatch:
    """An ``on_progress`` callback that notes when no worker consumes the job's queue.

    Args:
        app: the Celery app (its broker is the workers' Redis).
        queue: the queue the job's chunks were sent to.
        note: called with a one-line message.
        ask: how to list consumers (``consumers_of``; a parameter for unit tests).
    """

    def __init__(
        self,
        app: Any,
        queue: str,
        note: Callable[[str], None],
        ask: Callable[[Any, str], list[str]] = consumers_of,
    ) -> None:
        self.app = app
        self.queue = queue
        self.note = note
        self.ask = ask
        self.missing = False
        self._done = -1
        self._progress_at = time.monotonic()
        self._next_ask = 0.0

    def __call__(self, status: JobStatus) -> None:
        now = time.monotonic()
        if status.finished:
            return
        if status.done_count != self._done:
            self._done, self._progress_at = status.done_count, now
            if self._done > 0 and self.missing:
                self.missing = False
                self.note(f"a worker is consuming queue {self.queue} again")
            return
        if now - self._progress_at < ASK_AFTER or now < self._next_ask:
            return
        self._next_ask = now + ASK_EVERY
        try:
            found = self.ask(self.app, self.queue)
        except Exception as exc:  # a broker outage: the wait's own retries report it
            log.debug("could not ask workers for their queues: %s", exc)
            return
        if not found and not self.missing:
            self.missing = True
            self.note(
                f"no worker is consuming queue {self.queue} (start `bulktag worker`, or check "
                "BULKTAG_QUEUE and BULKTAG_REDIS_URL); still waiting"
            )
        elif found and self.missing:
            self.missing = False
            self.note(f"{', '.join(found)} now consuming queue {self.queue}")
