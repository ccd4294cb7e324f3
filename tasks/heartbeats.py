"""Worker heartbeats: which worker processes are alive, and when a gone one last beat.

Each worker process (the Celery main process that consumes and acks messages, and each
pool process that runs chunks) keeps ``bulktag:heartbeat:{host}:{pid}`` alive with a
TTL, refreshed from a thread (``worker.heartbeat``), never from the task loop: a long
forward pass must not look like death. A process whose key has lapsed is *gone*; its
last beat stays in ``bulktag:heartbeats`` so ``bulktag workers`` and ``status`` can say
when it died. Each process also carries a random *instance* token, so a restarted
container that gets the same hostname and pid is not mistaken for the process that
died (its heartbeat names another instance).

This is the liveness half of dead-worker recovery; ``tasks.recovery`` is the other.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from tasks import keys

# Gone processes' last beats are forgotten after this long (``bulktag workers`` history).
FORGET_AFTER = 7 * 24 * 3600.0

# This worker's main process, set there (``worker.heartbeat``) before the pool forks, so
# a pool process knows which main process would ack its chunk, and that one's instance.
_main: Beat | None = None


def set_main(beat: Beat) -> None:
    """Remember this worker's main-process heartbeat identity (called before the fork)."""
    global _main
    _main = beat


def main_process() -> Beat | None:
    """The heartbeat identity of this worker's main process (None outside a worker)."""
    return _main


def beat_interval(ttl: int) -> float:
    """Seconds between two beats: six beats per TTL, so five can be late or lost."""
    return max(0.5, ttl / 6)


def sweep_interval(ttl: int) -> float:
    """Seconds between two recovery sweeps: a third of the TTL.

    A dead process's chunks are re-queued at most ``ttl + sweep_interval(ttl)`` seconds
    after its last beat (40 s with the default 30 s TTL).
    """
    return max(1.0, ttl / 3)


def recovery_bound(ttl: int) -> float:
    """Worst-case seconds from a death to its chunks being back on the queue."""
    return ttl + sweep_interval(ttl)


@dataclass(frozen=True)
class Beat:
    """One process's heartbeat: who it is and when it last said so."""

    host: str  # the Celery node name, e.g. "bulktag@myhost"
    pid: int
    role: str  # "main" (consumes and acks messages) or "pool" (runs chunks)
    instance: str  # random per process start: tells a restarted pid from the dead one
    started_at: float
    beat_at: float = 0.0
    stopped_at: float | None = None  # set on a clean stop: "stopped", not "gone"

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Beat:
        data: dict[str, Any] = json.loads(text)
        return cls(
            str(data["host"]),
            int(data["pid"]),
            str(data["role"]),
            str(data["instance"]),
            float(data["started_at"]),
            float(data.get("beat_at") or 0.0),
            float(data["stopped_at"]) if data.get("stopped_at") else None,
        )


@dataclass(frozen=True)
class ProcessState:
    """A process as ``bulktag workers`` shows it."""

    beat: Beat
    state: str  # "alive", "gone" (heartbeat lapsed) or "stopped" (shut down cleanly)


class HeartbeatStore:
    """Reads and writes heartbeats; the only code that touches their keys."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r = client
        self.ttl = ttl

    def beat(self, beat: Beat) -> Beat:
        """Refresh ``beat``'s key for another TTL; returns it with ``beat_at`` = now.

        Raises:
            redis.RedisError: Redis did not take it (the caller's thread retries next beat).
        """
        fresh = replace(beat, beat_at=time.time())
        text = fresh.to_json()
        pipe = self.r.pipeline(transaction=False)
        pipe.set(keys.heartbeat(beat.host, beat.pid), text, ex=self.ttl)
        pipe.hset(keys.heartbeats(), fresh.name, text)
        pipe.execute()
        return fresh

    def stop(self, beat: Beat) -> None:
        """A clean shutdown: drop the key at once and remember the process as stopped."""
        stopped = replace(beat, stopped_at=time.time())
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(keys.heartbeat(beat.host, beat.pid))
        pipe.hset(keys.heartbeats(), stopped.name, stopped.to_json())
        pipe.execute()

    def alive(self, who: set[tuple[str, int, str]]) -> set[tuple[str, int, str]]:
        """Which ``(host, pid, instance)`` processes have an unexpired heartbeat."""
        ordered = sorted(who)
        if not ordered:
            return set()
        raws = self.r.mget([keys.heartbeat(host, pid) for host, pid, _ in ordered])
        live = set()
        for (host, pid, instance), raw in zip(ordered, raws, strict=True):
            if raw and Beat.from_json(raw).instance == instance:
                live.add((host, pid, instance))
        return live

    def last_beat(self, host: str, pid: int) -> Beat | None:
        """The newest beat on record for ``host:pid`` (also after its key lapsed)."""
        raw = self.r.hget(keys.heartbeats(), f"{host}:{pid}")
        return Beat.from_json(raw) if raw else None

    def states(self) -> dict[str, ProcessState]:
        """Every process on record, "host:pid" -> its state; forgets week-old gone ones."""
        raw: dict[str, str] = self.r.hgetall(keys.heartbeats())  # type: ignore[assignment]
        beats = {name: Beat.from_json(text) for name, text in raw.items()}
        names = sorted(beats)
        live_raw = self.r.mget([keys.heartbeat(beats[n].host, beats[n].pid) for n in names])
        now = time.time()
        states: dict[str, ProcessState] = {}
        stale = []
        for name, current in zip(names, live_raw, strict=True):
            beat = beats[name]
            if current and Beat.from_json(current).instance == beat.instance:
                state = "alive"
            elif beat.stopped_at:
                state = "stopped"
            else:
                state = "gone"
            if state != "alive" and now - beat.beat_at > FORGET_AFTER:
                stale.append(name)
                continue
            states[name] = ProcessState(beat, state)
        if stale:
            self.r.hdel(keys.heartbeats(), *stale)
        return states
