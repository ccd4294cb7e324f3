"""Backpressure: hold the producer while too many chunks wait in the broker queue.

Without a cap, a 10-million-URI job is enqueued as fast as the producer can read it,
and every waiting chunk message sits in Redis's memory until a worker takes it. With
``--max-queued N`` (or ``BULKTAG_MAX_QUEUED``) the producer checks the queue's length
(``LLEN``; kombu keeps the queue as a Redis list) before each publish batch and sleeps
while adding the batch would take it past ``N``. Chunks a worker has taken but not yet
acknowledged are no longer in the list, so they do not count.

Given the job's store and id, a waiting producer also polls the job's state and stops
when it is cancelled: with no worker draining the queue it would otherwise wait forever
("cancelling a job also stops its producer", README).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from tasks import keys
from tasks.errors import ConfigError
from tasks.store import ResultStore


class QueueGate:
    """Blocks until the broker queue has room for a batch of chunk messages.

    Args:
        client: the broker's Redis.
        queue: the Celery queue name.
        cap: most chunk messages allowed to wait in the queue (>= 1).
        on_wait: called with the queue length each time the producer has to wait.
        poll: seconds between checks while waiting.
        sleep: injectable for tests.
    """

    def __init__(
        self,
        client: redis.Redis,
        queue: str,
        cap: int,
        *,
        on_wait: Callable[[int], None] | None = None,
        poll: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        self.client = client
        self.key = keys.broker_queue(queue)
        self.cap = cap
        self.on_wait = on_wait
        self.poll = poll
        self.sleep = sleep
        self.waited = 0.0  # seconds spent blocked, for the submit summary

    def queued(self) -> int:
        """Chunk messages waiting in the queue now."""
        return int(self.client.llen(self.key))

    def wait_for_room(
        self, incoming: int, *, store: ResultStore | None = None, job_id: str | None = None
    ) -> None:
        """Return once ``incoming`` more messages keep the queue within the cap.

        ``incoming`` larger than the cap is treated as the cap, so a batch can always go
        once the queue is empty.

        Args:
            incoming: chunk messages about to be published.
            store: with ``job_id``, the job's store: checked once per poll while waiting.
            job_id: the job being submitted; a cancel while waiting ends the wait.

        Raises:
            ConfigError: the job was cancelled (or deleted) while the producer waited.
        """
        incoming = min(incoming, self.cap)
        while (queued := self.queued()) + incoming > self.cap:
            if store is not None and job_id is not None:
                state = store.job_state(job_id)
                if state in ("cancelled", None):
                    why = "cancelled" if state else "deleted"
                    raise ConfigError(f"job {job_id} was {why} while waiting for room in the queue")
            if self.on_wait is not None:
                self.on_wait(queued)
            started = time.monotonic()
            self.sleep(self.poll)
            self.waited += time.monotonic() - started
