"""Prompt recovery: the chunks held by a dead worker go back on their queue.

With late acks, a chunk's message stays in kombu's ``unacked`` hash until the worker's
main process acks it. When a pool process dies, that main process requeues the chunk at
once (``task_reject_on_worker_lost``). When the main process itself dies (``kill -9``,
the OOM killer, a lost node) nothing acks or requeues: before this module the chunk
waited for Redis's visibility timeout (an hour by default).

Here, as in dramatiq's Redis broker and RQ's worker registry, a live worker notices the
dead one by its lapsed heartbeat (``tasks.heartbeats``) and puts each chunk it held back
on the queue with kombu's own ``QoS.restore_by_tag``, under kombu's ``unacked_mutex``:
the *original* message (same task id, flagged redelivered), so the delivery ledger
counts the new run and the poison-chunk rule (``tasks.poison``) still applies.

Which message a dead worker held: when a pool process begins a chunk, the delivery
ledger also records the message's delivery tag with the process and its main process
(a ``Holding`` in ``bulktag:held``). A held chunk is re-queued only when all of these
hold, so a healthy chunk, however slow, is never re-run while its worker lives:

- the main process that consumed it has no unexpired heartbeat (same instance);
- the chunk began more than one TTL ago (a new worker's first beat cannot be missed);
- the message is still un-acked, and was delivered no later than the chunk began
  (a later delivery belongs to some other worker);
- the sweeper has itself beaten without a gap for a whole TTL (after a Redis outage
  every heartbeat has lapsed; nobody judges until the live ones have beaten again);
- the sweeper wins ``SET NX`` on a claim for (tag, dead main process): at most once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import redis

from tasks import keys
from tasks.heartbeats import HeartbeatStore, main_process

log = logging.getLogger("bulktag.recovery")

# A claim outlives any chance of meeting the same (tag, dead process) pair again.
CLAIM_TTL = 24 * 3600
# Recovery events kept for ``bulktag status`` (all jobs, newest first).
MAX_EVENTS = 1000
# A delivery time later than the chunk's start by more than this is another delivery
# (both clocks are the dead worker's host; the slack only absorbs float rounding).
SAME_DELIVERY_SLACK = 1.0


@dataclass(frozen=True)
class Holding:
    """A chunk a pool process began, and the message (delivery tag) it came in."""

    tag: str
    job: str
    chunk: str
    host: str
    pid: int  # the pool process running the chunk
    consumer_pid: int  # its main process: the one that would ack the message
    consumer_instance: str  # that main process's heartbeat instance
    started_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Holding:
        data: dict[str, Any] = json.loads(text)
        return cls(
            str(data["tag"]),
            str(data["job"]),
            str(data["chunk"]),
            str(data["host"]),
            int(data["pid"]),
            int(data["consumer_pid"]),
            str(data["consumer_instance"]),
            float(data["started_at"]),
        )

    @property
    def consumer(self) -> tuple[str, int, str]:
        return (self.host, self.consumer_pid, self.consumer_instance)


def delivery_tag(request: Any) -> str | None:
    """The kombu delivery tag of the message a Celery task request came in.

    Celery hands the pool process the message's properties with the request; kombu's
    Redis transport keeps the tag there (``delivery_info`` is checked first).
    """
    info = getattr(request, "delivery_info", None) or {}
    props = getattr(request, "properties", None) or {}
    tag = info.get("delivery_tag") or props.get("delivery_tag")
    return str(tag) if tag else None


def holding_for(tag: str | None, job_id: str, chunk: str, host: str) -> Holding | None:
    """What this pool process holds while it runs ``chunk``.

    None outside a bulktag worker's pool process (no main-process heartbeat to tie the
    chunk to): such a chunk falls back to the visibility timeout.
    """
    main = main_process()
    if not tag or main is None or main.pid != os.getppid():
        return None
    return Holding(tag, job_id, chunk, host, os.getpid(), main.pid, main.instance, time.time())


def hold(pipe: Any, holding: Holding) -> None:
    """Queue (on ``pipe``) the record that ``holding``'s process holds its message."""
    pipe.hset(keys.held_deliveries(), holding.tag, holding.to_json())


def release(client: redis.Redis, holding: Holding) -> bool:
    """Forget ``holding`` if it is still the current holder of its tag.

    Conditional, because a process paused past its TTL may finish after its chunk was
    re-queued and begun elsewhere: it must not erase the new holder's entry.
    """

    def forget(pipe: Any) -> bool:
        raw = pipe.hget(keys.held_deliveries(), holding.tag)
        pipe.multi()
        if raw and Holding.from_json(raw) == holding:
            pipe.hdel(keys.held_deliveries(), holding.tag)
            return True
        return False

    transaction: Any = client.transaction  # typed as taking a callable that returns None
    return bool(transaction(forget, keys.held_deliveries(), value_from_callable=True))


@dataclass(frozen=True)
class Requeued:
    """Chunks of one job, held by one dead worker, that a sweep put back on the queue."""

    job: str
    chunks: list[str]
    host: str
    pid: int  # the dead main process
    died_at: float | None  # its last heartbeat (None: none on record)
    requeued_at: float
    by: str  # the sweeping process, "host:pid"

    def sentence(self) -> str:
        """One line for ``bulktag status``."""
        n = len(self.chunks)
        held = f"{n} chunk{'s' if n != 1 else ''} held by a worker that died"
        died = f" at {clock(self.died_at)}" if self.died_at else ""
        verb = "were" if n != 1 else "was"
        return (
            f"{held}{died} {verb} re-queued at {clock(self.requeued_at)} "
            f"({self.host}, pid {self.pid})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.sentence()}


def clock(when: float) -> str:
    """``HH:MM:SS`` in the local time zone (servers usually run UTC)."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def recovery_events(client: redis.Redis, job_id: str, limit: int = 20) -> list[Requeued]:
    """The job's recoveries, oldest first (at most ``limit``)."""
    found = []
    for raw in client.lrange(keys.recoveries(), 0, MAX_EVENTS - 1):
        data = json.loads(raw)
        if data.get("job") == job_id:
            data.pop("message", None)
            found.append(Requeued(**data))
    return list(reversed(found[:limit]))


class Recovery:
    """One sweep over the un-acked messages: re-queue those whose holder died."""

    def __init__(self, client: redis.Redis, heartbeats: HeartbeatStore, me: str) -> None:
        """
        Args:
            client: bulktag's own Redis client (the ``bulktag:*`` keys).
            heartbeats: liveness, with the TTL workers beat with.
            me: the sweeping process, ``host:pid`` (recorded in claims and events).
        """
        self.r = client
        self.heartbeats = heartbeats
        self.me = me

    def sweep(self, channel: Any) -> list[Requeued]:
        """Re-queue every un-acked chunk whose main process has no heartbeat.

        Args:
            channel: a kombu Redis channel (its ``unacked`` keys, mutex and QoS).

        Returns:
            What was re-queued, per job and dead worker.
        """
        with channel.conn_or_acquire() as broker:
            delivered = {
                _text(tag): float(score)
                for tag, score in broker.zrange(channel.unacked_index_key, 0, -1, withscores=True)
            }
            if not delivered:
                self._prune(delivered, time.time())
                return []
            now = time.time()
            holdings = self._holdings(list(delivered))
            self._prune(delivered, now)
            suspects = [
                h
                for h in holdings
                if now - h.started_at > self.heartbeats.ttl
                and delivered[h.tag] <= h.started_at + SAME_DELIVERY_SLACK
            ]
            if not suspects:
                return []
            alive = self.heartbeats.alive({h.consumer for h in suspects})
            dead = [h for h in suspects if h.consumer not in alive]
            if not dead:
                return []
            return self._requeue(channel, broker, dead)

    def _holdings(self, tags: list[str]) -> list[Holding]:
        raws = self.r.hmget(keys.held_deliveries(), tags)
        return [Holding.from_json(raw) for raw in raws if raw]

    def _requeue(self, channel: Any, broker: Any, dead: list[Holding]) -> list[Requeued]:
        from kombu.transport.redis import Mutex, MutexHeld

        done: dict[tuple[str, str, int], list[str]] = defaultdict(list)
        try:
            # kombu's own visibility sweep takes this mutex too: never both at once.
            with Mutex(broker, channel.unacked_mutex_key, channel.unacked_mutex_expire):
                for h in dead:
                    if self._requeue_one(channel, broker, h):
                        done[(h.job, h.host, h.consumer_pid)].append(h.chunk)
        except MutexHeld:
            log.info("recovery: kombu's unacked mutex is held; retrying next sweep")
        now = time.time()
        events = []
        for (job, host, pid), chunks in done.items():
            last = self.heartbeats.last_beat(host, pid)
            events.append(
                Requeued(job, chunks, host, pid, last.beat_at if last else None, now, self.me)
            )
        if events:
            pipe = self.r.pipeline(transaction=False)
            for event in events:
                pipe.lpush(keys.recoveries(), json.dumps(asdict(event)))
                log.warning("job %s: %s", event.job, event.sentence())
            pipe.ltrim(keys.recoveries(), 0, MAX_EVENTS - 1)
            pipe.execute()
        return events

    def _requeue_one(self, channel: Any, broker: Any, h: Holding) -> bool:
        claim = keys.recovery_claim(h.tag, f"{h.host}:{h.consumer_pid}:{h.consumer_instance}")
        if not self.r.set(claim, self.me, nx=True, ex=CLAIM_TTL):
            return False  # another sweeper has it
        if not broker.hexists(channel.unacked_key, h.tag):
            return False  # acked or restored meanwhile
        # Forget the holder first: once restored, the message may be begun elsewhere at
        # once, and that new holder's entry must survive.
        release(self.r, h)
        channel.qos.restore_by_tag(h.tag, client=broker)
        return True

    def _prune(self, delivered: dict[str, float], now: float) -> None:
        """Drop holder entries whose message is no longer un-acked (acked by a process
        whose ledger write failed, or requeued by Celery after a pool process died).

        Only entries older than a TTL: one begun after ``delivered`` was read is not in it.
        """
        raw: dict[str, str] = self.r.hgetall(keys.held_deliveries())  # type: ignore[assignment]
        stale = [
            tag
            for tag, text in raw.items()
            if tag not in delivered
            and now - Holding.from_json(text).started_at > self.heartbeats.ttl
        ]
        if stale:
            self.r.hdel(keys.held_deliveries(), *stale)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
