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
Every metric is listed in docs/OPERATIONS.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence, Sized
from contextlib import suppress
from typing import Any, TypeVar

from celery import signals
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.fetch import FETCHERS, scheme_of

log = logging.getLogger("bulktag.metrics")

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound=Sized)

# Seconds: a local read is ~1 ms, an S3 GET tens of ms, a stalled server up to the deadline.
_FETCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds: a batch-32 ResNet-18 forward is ~0.3-2 s on CPU, ~20 ms on a GPU.
_BATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_CHUNK_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)

IMAGES_TAGGED = Counter(
    "bulktag_images_tagged", "Images run through the model (unique new content only)"
)
URIS = Counter("bulktag_uris", "URIs given a final record, by status", ["status"])
DEDUPE_HITS = Counter(
    "bulktag_dedupe_hits",
    "URIs served without their own forward pass (a repeat, or content cached for the model)",
)
ERRORS = Counter("bulktag_errors", "URIs that ended as error, by error class", ["kind"])
BATCH_SIZE = Histogram("bulktag_batch_size", "Images per forward pass", buckets=_SIZE_BUCKETS)
BATCH_SECONDS = Histogram(
    "bulktag_batch_seconds", "Wall time of one batched forward pass", buckets=_BATCH_BUCKETS
)
FETCH_SECONDS = Histogram(
    "bulktag_fetch_seconds",
    "Wall time to fetch one URI's bytes (retries included), by scheme",
    ["scheme"],
    buckets=_FETCH_BUCKETS,
)
CHUNK_SECONDS = Histogram(
    "bulktag_chunk_seconds",
    "Wall time of one chunk task, fetch to stored records",
    buckets=_CHUNK_BUCKETS,
)

# Jobs whose progress the collector reports: the newest ones still in flight.
ACTIVE_JOBS_SCANNED = 100


# -- hooks called from tasks/ ------------------------------------------------------------
def timed_fetch(fetch: Callable[[str, T], bytes]) -> Callable[[str, T], bytes]:
    """``fetch`` wrapped to observe ``bulktag_fetch_seconds`` (success or failure)."""

    def run(uri: str, settings: T) -> bytes:
        started = time.perf_counter()
        try:
            return fetch(uri, settings)
        finally:
            FETCH_SECONDS.labels(fetch_scheme_label(uri)).observe(time.perf_counter() - started)

    return run


def fetch_scheme_label(uri: str) -> str:
    """The ``scheme`` label for ``uri``: a scheme bulktag fetches, or ``other``.

    The text before ``://`` comes from whoever submitted the job; used as is, every
    made-up scheme would add a time series to every worker's endpoint, without bound.
    """
    scheme = scheme_of(uri)
    if scheme not in FETCHERS:
        return "other"
    return scheme or "file"  # a plain local path


def timed_forward(forward: Callable[[S], R], images: S) -> R:
    """Run one batched ``forward`` over ``images`` (a list or an N x C x H x W tensor)
    and observe the batch's size and latency. Thread-safe (decode lanes call it)."""
    started = time.perf_counter()
    result = forward(images)
    BATCH_SECONDS.observe(time.perf_counter() - started)
    BATCH_SIZE.observe(len(images))
    return result


def count_error(exc: BaseException, uris: int = 1) -> None:
    """Count ``uris`` URIs that ended as error because of ``exc`` (label: its class)."""
    ERRORS.labels(type(exc).__name__).inc(uris)


def chunk_done(report: Any, seconds: float) -> None:
    """Record a finished chunk from its ``pipeline.ChunkReport``."""
    CHUNK_SECONDS.observe(seconds)
    IMAGES_TAGGED.inc(report.forwarded)
    DEDUPE_HITS.inc(report.deduped)
    URIS.labels("ok").inc(report.ok)
    URIS.labels("error").inc(report.error)


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
        multiprocess.MultiProcessCollector(registry)
    else:  # single process (tests, `celery worker --pool solo`): this process's metrics
        for metric in (IMAGES_TAGGED, URIS, DEDUPE_HITS, ERRORS, BATCH_SIZE, BATCH_SECONDS):
            registry.register(metric)
        registry.register(FETCH_SECONDS)
        registry.register(CHUNK_SECONDS)
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
    from worker.settings import Settings

    settings = Settings.from_env()
    if not settings.metrics_port:
        return
    try:
        serve(settings.metrics_port, settings.redis_url, [settings.queue])
    except OSError as exc:  # a metrics port clash must not take the worker down
        log.error("metrics endpoint not started on port %d: %s", settings.metrics_port, exc)
        return
    log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)


@signals.worker_process_shutdown.connect
def mark_dead(pid: int | None = None, **_: Any) -> None:
    """Drop a finished child's live-gauge files (its counters keep adding up)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())
