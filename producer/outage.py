"""Riding out a Redis outage while waiting on a job, and saying when a job's state is gone.

``submit --wait`` (``Job.wait``) used to quit on the first connection error, so a
3-second Redis restart ended a wait that the workers themselves rode out. Now a wait
retries with backoff and jitter for ``WAIT_OUTAGE_BUDGET`` seconds, says once that Redis
is unreachable and once that it is back, and only then gives up with one line.

A Redis restarted *without persistence* comes back empty: the job the user is waiting
on (or asks ``status`` about) no longer exists there. "no job named X" would suggest a
typo; ``vanished`` and ``missing`` say what most likely happened instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import redis

from tasks.errors import StoreUnavailable

# How long a wait keeps retrying an unreachable Redis: longer than a restart (AOF
# replay of a busy instance takes seconds), short enough that a dead Redis is reported.
WAIT_OUTAGE_BUDGET = 60.0
_BACKOFF_BASE = 0.25  # first retry waits up to this, doubling, capped at _BACKOFF_CAP
_BACKOFF_CAP = 5.0
# What an unreachable Redis raises through redis-py and bulktag's own connect().
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    StoreUnavailable,
)


class Outage:
    """Tracks one run of failed Redis calls: when it began, how long to back off.

    Args:
        job_id: the job being waited on (for the messages).
        budget: seconds of continuous failure allowed before giving up.
        note: called with a one-line message when the outage begins and ends.
    """

    def __init__(
        self,
        job_id: str,
        budget: float = WAIT_OUTAGE_BUDGET,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.budget = budget
        self.note = note
        self.since: float | None = None
        self.attempts = 0

    def failed(self, exc: Exception) -> float:
        """Record a failed call; return the seconds to wait before the next try.

        Raises:
            StoreUnavailable: Redis has been unreachable for longer than the budget.
        """
        now = time.monotonic()
        if self.since is None:
            self.since, self.attempts = now, 0
            if self.note:
                self.note(
                    f"Redis unreachable while waiting for job {self.job_id} "
                    f"({type(exc).__name__}: {exc}); retrying for up to {self.budget:g}s"
                )
        elif now - self.since >= self.budget:
            raise StoreUnavailable(
                f"Redis unreachable for {now - self.since:.0f}s while waiting for job "
                f"{self.job_id} ({type(exc).__name__}: {exc}); the workers carry on without "
                f"us: check later with `bulktag status {self.job_id}`"
            ) from exc
        self.attempts += 1
        delay: float = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**self.attempts)
        return delay * random.uniform(0.5, 1.0)

    def succeeded(self) -> None:
        """Record a call that got through; ends the outage if there was one."""
        if self.since is not None:
            if self.note:
                self.note(f"Redis is back after {time.monotonic() - self.since:.1f}s")
            self.since = None


def vanished(job_id: str) -> str:
    """The message for a job that existed during this wait and is no longer stored."""
    return (
        f"job {job_id}: it is gone from the results database (deleted or pruned while "
        "this wait ran?); submit its URIs again as a new job"
    )


def missing(client: redis.Redis, job_id: str) -> str:
    """Why ``job_id`` is not found. Jobs live in the results database (issue 12), so an
    empty or restarted Redis says nothing about them: a plain "no job named"."""
    return f"no job named {job_id!r}"
