"""Prometheus metrics: one endpoint per worker that adds up all its pool processes.

Celery's prefork pool runs chunks in child processes, each with its own memory, so the
metrics use prometheus_client's *multiprocess mode*: every child writes its samples to
mmap files in ``PROMETHEUS_MULTIPROC_DIR`` and the parent's endpoint sums the files.
The mode is chosen when prometheus_client is first imported, so ``bulktag worker``
creates (and empties) that directory and exports the variable before anything imports
this module (``worker.run.prepare_metrics_dir``). Anywhere else (unit tests, a producer)
the same metrics simply count in-process.

The parent serves ``/metrics`` on ``BULKTAG_METRICS_PORT`` once the pool is up
(``worker_ready``); a child that exits cleanly is marked dead so its live gauges go.
Queue depth and job progress are read from Redis at scrape time by ``RedisCollector``.
The instruments themselves live with the work they count (``tasks.instruments``).
Every metric is listed in docs/OPERATIONS.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks import instruments

log = logging.getLogger("bulktag.metrics")

# Jobs whose progress the collector reports: the newest ones still in flight.
ACTIVE_JOBS_SCANNED = 100


# -- Redis-derived gauges ----------------------------------------------------------------
class RedisCollector(Collector):
    """Queue depth and job progress, read from Redis on every scrape.

    Every worker reports the same numbers (they are global), so aggregate them with
    ``max`` in Prometheus rather than ``sum``. A Redis outage shows as
    ``bulktag_redis_up 0`` instead of a failed scrape.
    """

    def __init__(self, redis_url: str, queues: Sequence[str]) -> None:
        self.redis_url = redis_url
        self.queues = list(queues)
        self._store: Any = None

    def _connect(self) -> Any:
        from tasks.store import ResultStore, connect

        if self._store is None:
            self._store = ResultStore(connect(self.redis_url))
        return self._store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from tasks import keys

        up = GaugeMetricFamily("bulktag_redis_up", "1 if the last scrape could read Redis")
        depth = GaugeMetricFamily(
            "bulktag_queue_depth", "Chunk messages waiting in the broker queue", labels=["queue"]
        )
        unacked = GaugeMetricFamily(
            "bulktag_unacked_messages", "Messages taken by a worker, not yet acknowledged"
        )
        active = GaugeMetricFamily("bulktag_jobs_active", "Jobs still enumerating or running")
        progress = GaugeMetricFamily(
            "bulktag_job_uris",
            "URIs of an active job, by count (total, ok, error, deduped, pending)",
            labels=["job", "count"],
        )
        try:
            store = self._connect()
            for queue in self.queues:
                depth.add_metric([queue], float(store.r.llen(keys.broker_queue(queue))))
            unacked.add_metric([], float(store.r.hlen("unacked")))  # kombu's in-flight hash
            running = 0
            for job_id in store.list_jobs(ACTIVE_JOBS_SCANNED):
                with suppress(Exception):  # deleted between list and read
                    st = store.status(job_id)
                    if st.finished:
                        continue
                    running += 1
                    for name in ("total", "ok", "error", "deduped", "pending"):
                        progress.add_metric([job_id, name], float(getattr(st, name)))
            active.add_metric([], float(running))
            up.add_metric([], 1.0)
        except Exception as exc:
            log.warning("metrics: cannot read Redis: %s", exc)
            self._store = None
            up.add_metric([], 0.0)
            yield up
            return
        yield from (up, depth, unacked, active, progress)


def build_registry(redis_url: str, queues: Sequence[str]) -> CollectorRegistry:
    """A registry holding every process's samples (multiprocess mode) plus Redis gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:  # single process (tests, `celery worker --pool solo`): this process's metrics
        for metric in instruments.ALL:
            registry.register(metric)
    registry.register(RedisCollector(redis_url, queues))
    return registry


def serve(port: int, redis_url: str, queues: Sequence[str], addr: str = "0.0.0.0") -> Any:
    """Start the ``/metrics`` HTTP server in a daemon thread; returns the server.

    Raises:
        OSError: the port is taken.
    """
    server, _thread = start_http_server(port, addr, registry=build_registry(redis_url, queues))
    return server


# -- Celery signal handlers (connected when the worker imports this module) --------------
@signals.worker_ready.connect
def serve_when_ready(**_: Any) -> None:
    """Open the worker's endpoint in the parent once the pool children are forked."""
    from tasks.settings import Settings
    from worker.queues import consumed_queues

    settings = Settings.from_env()
    if not settings.metrics_port:
        return
    try:
        # queue depth of both lanes (worker.queues): the interactive one, then bulk
        serve(settings.metrics_port, settings.redis_url, consumed_queues(settings.queue))
    except OSError as exc:  # a metrics port clash must not take the worker down
        log.error("metrics endpoint not started on port %d: %s", settings.metrics_port, exc)
        return
    log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)


@signals.worker_process_shutdown.connect
def mark_dead(pid: int | None = None, **_: Any) -> None:
    """Drop a finished child's live-gauge files (its counters keep adding up)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]
