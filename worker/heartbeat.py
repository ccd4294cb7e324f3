"""Heartbeat and recovery threads, started by Celery's worker signals.

Every worker process beats from a daemon thread (``tasks.heartbeats``): the main
process from ``worker_init`` (before it consumes a message, so no chunk it hands out
can predate its first beat) and each pool process from ``worker_process_init``. A
thread, not the task loop: a forward pass of minutes must not look like death, and the
thread keeps beating while a chunk runs.

The main process also sweeps (``tasks.recovery``): every third of a TTL it re-queues
the chunks held by workers whose main process stopped beating. Every live worker sweeps;
kombu's unacked mutex and a per-chunk claim make the first one to look do it, once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from celery import signals

from tasks import heartbeats
from tasks.heartbeats import Beat, HeartbeatStore, beat_interval, sweep_interval
from tasks.recovery import Recovery
from tasks.settings import Settings

log = logging.getLogger("bulktag.heartbeat")

_threads: list[Pacemaker] = []


class Pacemaker(threading.Thread):
    """Beats every ``interval`` seconds; optionally runs ``then`` after a good beat."""

    def __init__(
        self,
        store: HeartbeatStore,
        beat: Beat,
        then: Callable[[Pacemaker], None] | None = None,
        every: float | None = None,
    ) -> None:
        super().__init__(name=f"bulktag-heartbeat-{beat.role}", daemon=True)
        self.store = store
        self.beat = beat
        self.then = then
        self.every = every  # seconds between two ``then`` calls (None: every beat)
        self.interval = beat_interval(store.ttl)
        self.halt = threading.Event()
        self._steady_since: float | None = None  # beats without a gap since then
        self._last_ok: float | None = None
        self._last_then = 0.0

    def beat_once(self) -> bool:
        """One beat; False (and logged once) when Redis did not take it."""
        now = time.monotonic()
        try:
            self.beat = self.store.beat(self.beat)
        except redis.RedisError as exc:
            if self._steady_since is not None:
                log.warning("heartbeat of pid %d not written: %s", self.beat.pid, exc)
            self._steady_since = None
            return False
        # A gap (Redis away, the process paused with SIGSTOP, a starved machine) restarts
        # the clock: only a sweeper that has watched a whole TTL may call others dead.
        if self._last_ok is None or now - self._last_ok > self.store.ttl / 2:
            self._steady_since = now
        self._last_ok = now
        return True

    def steady(self) -> bool:
        """True when this process has beaten without a gap for at least one TTL."""
        if self._steady_since is None or self._last_ok is None:
            return False
        now = time.monotonic()
        return (
            now - self._steady_since >= self.store.ttl and now - self._last_ok < self.interval * 2
        )

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            if not self.beat_once() or self.then is None:
                continue
            if self.every and time.monotonic() - self._last_then < self.every:
                continue
            self._last_then = time.monotonic()
            try:
                self.then(self)
            except Exception:  # never let the heartbeat thread die with a sweep
                log.exception("recovery sweep failed; trying again next time")

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=self.interval + 1)
        with contextlib.suppress(redis.RedisError):
            self.store.stop(self.beat)


def _store(settings: Settings) -> HeartbeatStore:
    from tasks.store import connect

    return HeartbeatStore(connect(settings.redis_url), settings.heartbeat_ttl)


def _new_beat(host: str, role: str) -> Beat:
    return Beat(host, os.getpid(), role, uuid.uuid4().hex[:12], time.time())


@signals.worker_init.connect
def start_main_heartbeat(sender: Any = None, **_: Any) -> None:
    """Beat from the main process before it consumes, and sweep for dead workers."""
    settings = Settings.from_env()
    host = getattr(sender, "hostname", None) or "celery"
    store = _store(settings)
    main = _new_beat(host, "main")
    heartbeats.set_main(main)  # before the fork: pool processes record it with their chunks
    app = getattr(sender, "app", None)
    sweeper = Sweeper(app, store, main) if app is not None else None
    pacemaker = Pacemaker(
        store,
        main,
        then=sweeper.sweep if sweeper else None,
        every=sweep_interval(settings.heartbeat_ttl),
    )
    pacemaker.beat_once()
    pacemaker.start()
    _threads.append(pacemaker)


@signals.worker_process_init.connect
def start_pool_heartbeat(**_: Any) -> None:
    """Beat from a pool process (its own thread: threads do not survive the fork)."""
    _threads.clear()  # the main process's threads were not forked with us
    main = heartbeats.main_process()
    host = main.host if main else "celery"
    pacemaker = Pacemaker(_store(Settings.from_env()), _new_beat(host, "pool"))
    pacemaker.beat_once()
    pacemaker.start()
    _threads.append(pacemaker)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def stop_heartbeat(**_: Any) -> None:
    """A clean stop: the process shows as stopped, not gone."""
    while _threads:
        _threads.pop().stop()


class Sweeper:
    """The main process's recovery sweep, over its own broker connection."""

    def __init__(self, app: Any, store: HeartbeatStore, me: Beat) -> None:
        self.app = app
        self.recovery = Recovery(store.r, store, me.name)
        self._connection: Any = None

    def sweep(self, pacemaker: Pacemaker) -> None:
        if not pacemaker.steady():
            return
        if self._connection is None:
            self._connection = self.app.connection_for_write()
        try:
            self.recovery.sweep(self._connection.default_channel)
        except Exception:
            with contextlib.suppress(Exception):
                self._connection.release()
            self._connection = None
            raise
