"""Chunk identity and the delivery ledger: which chunks are running, and how often each ran.

A chunk (one Celery message) is named by the job indices it carries, so a redelivered
message, a copy restored after the visibility timeout and Celery's requeue after a
dead pool process all count against the same name. ``begin`` runs first thing in
every delivery: the count it returns is how ``tasks.poison`` notices a chunk that
kills its worker every time, and the in-flight entry is what lets ``bulktag status``
tell a slow job from a stuck one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from tasks import keys
from tasks.recovery import Holding, hold, release


def chunk_id(indices: Sequence[int], round_: int = 0, split: bool = False) -> str:
    """A short, readable, stable name for the chunk carrying ``indices``.

    ``"0-31"`` for a contiguous range, ``"3-90#1a2b3c4d"`` otherwise; ``@rN`` marks
    retry round N (``bulktag retry``) and ``/s`` a URI split out of a poison chunk, so
    their delivery counts start afresh.
    """
    if not indices:
        return "empty"
    first, last = indices[0], indices[-1]
    name = f"{first}-{last}"
    if list(indices) != list(range(first, last + 1)):
        digest = hashlib.sha1(",".join(map(str, indices)).encode(), usedforsecurity=False)
        name += "#" + digest.hexdigest()[:8]
    if round_:
        name += f"@r{round_}"
    if split:
        name += "/s"
    return name


@dataclass(frozen=True)
class InFlight:
    """A chunk a worker process has started and not yet finished."""

    chunk: str
    host: str
    pid: int
    started_at: float
    uris: int

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.started_at


class ChunkLedger:
    """Per-job delivery counts and in-flight chunks, in two Redis hashes (``tasks.keys``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def begin(
        self,
        job_id: str,
        chunk: str,
        *,
        host: str,
        pid: int,
        uris: int,
        holding: Holding | None = None,
    ) -> int:
        """Count one more delivery of ``chunk`` and mark it in flight.

        ``holding`` (the message's delivery tag and the main process that would ack it)
        is recorded with it, so that a live worker can re-queue the chunk if that main
        process dies (``tasks.recovery``).

        Returns:
            How many times the chunk has been started, this delivery included. A retried
            round trip may count one delivery twice: the count is "at least".
        """
        fields = {"host": host, "pid": pid, "started_at": time.time(), "uris": uris}
        if holding is not None:
            fields["tag"] = holding.tag
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(keys.job_deliveries(job_id), chunk, 1)
        pipe.hset(keys.job_in_flight(job_id), chunk, json.dumps(fields))
        if holding is not None:
            hold(pipe, holding)
        count = pipe.execute()[0]
        return int(count)

    def end(self, job_id: str, chunk: str, holding: Holding | None = None) -> None:
        """The chunk's records are stored: it is no longer in flight (nor held)."""
        self.r.hdel(keys.job_in_flight(job_id), chunk)
        if holding is not None:
            release(self.r, holding)

    def in_flight(self, job_id: str) -> list[InFlight]:
        """Chunks started and not finished, oldest first.

        An entry outlives a worker killed mid-chunk until the chunk is redelivered and
        finishes, which is exactly what makes a stuck chunk visible.
        """
        raw: dict[str, str] = self.r.hgetall(keys.job_in_flight(job_id))  # type: ignore[assignment]
        entries = []
        for chunk, text in raw.items():
            data = json.loads(text)
            entries.append(
                InFlight(
                    chunk,
                    data["host"],
                    int(data["pid"]),
                    float(data["started_at"]),
                    int(data["uris"]),
                )
            )
        return sorted(entries, key=lambda e: e.started_at)

    def deliveries(self, job_id: str) -> dict[str, int]:
        """Chunk id -> deliveries so far (1 for a chunk that ran once)."""
        raw: dict[str, str] = self.r.hgetall(keys.job_deliveries(job_id))  # type: ignore[assignment]
        return {chunk: int(count) for chunk, count in raw.items()}
