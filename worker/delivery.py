"""Celery delivery settings: at-least-once chunks over Redis, each setting with its reason.

docs/RELIABILITY.md has the same table with the fault each setting answers and the
test that proves it; keep the two in step.
"""

from __future__ import annotations

import math
import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tasks.settings import Settings
from worker.queues import QUEUE_ORDER_STRATEGY

# The hard time limit is this share of the visibility timeout: a hung chunk is killed
# (and requeued) by its own worker before Redis would hand a copy to a second worker.
TIME_LIMIT_SHARE = 0.9


def chunk_time_limit(visibility_timeout: int) -> int:
    """Seconds one chunk may run before its pool process is killed and it is requeued."""
    return max(1, int(visibility_timeout * TIME_LIMIT_SHARE))


# Seconds the store's client may spend retrying a write before a chunk gives up on Redis
# (tasks.store.connect(patient=True)), and an allowance for a chunk's own compute.
STORE_RETRY_BUDGET = 30.0
COMPUTE_ALLOWANCE = 60.0


def slowest_healthy_chunk(settings: Settings) -> float:
    """Seconds a healthy chunk of ``settings.chunk_size`` remote URIs may take, at worst.

    Every fetch thread's URIs stall to their limits: ``attempts`` x (connect timeout +
    download deadline) plus the full backoff, chunk / fetch threads rounds of it, then
    the store's retry budget and the compute allowance. With the defaults
    4 x (3 x 125 + 1.5) + 30 + 60 = ~1600 s (~27 min). Measured chunks take seconds
    (docs/RELIABILITY.md); the visibility timeout's hard time limit must stay above this
    bound, or Redis would hand a healthy chunk to a second worker.
    """
    rounds = math.ceil(settings.chunk_size / settings.fetch_threads)
    attempt = settings.connect_timeout + settings.fetch_deadline
    # The waits between attempts: base x (1 + 2 + ... + 2^(attempts-2)), full jitter at most
    backoff = settings.fetch_backoff * ((1 << (settings.fetch_attempts - 1)) - 1)
    fetching = rounds * (settings.fetch_attempts * attempt + backoff)
    return fetching + STORE_RETRY_BUDGET + COMPUTE_ALLOWANCE


def restore_interval(visibility_timeout: int) -> int:
    """Seconds between kombu's sweeps for un-acked messages past the visibility timeout.

    kombu's default sweep runs every 10 x 10 = 100 s, which would leave a dead worker's
    chunk stranded for minutes beyond a short visibility timeout. A tenth of the timeout
    (1-10 s) keeps the extra delay small and the sweep (one ZRANGE) cheap.
    """
    return max(1, min(10, visibility_timeout // 10))


def broker_ssl(url: str) -> dict[str, Any] | None:
    """TLS options for a ``rediss://`` broker URL that names none itself.

    kombu falls back to ``ssl_cert_reqs=CERT_NONE`` (no certificate check, only a
    warning) for a bare ``rediss://`` URL, while redis-py verifies by default; the
    broker must not be the weaker of the two connections. ``ssl_*`` query parameters in
    the URL (``ssl_ca_certs``, ``ssl_cert_reqs``...) still win.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    if any(key.startswith("ssl_") for key in parse_qs(parts.query)):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def delivery_conf(settings: Settings) -> dict[str, Any]:
    """The Celery settings that decide when a chunk counts as delivered (see module doc)."""
    vt = settings.visibility_timeout
    conf: dict[str, Any] = {
        # Ack a chunk only after its records are stored: a worker killed mid-chunk
        # leaves the message un-acked, to be delivered again.
        "task_acks_late": True,
        # When the pool process dies (SIGKILL, OOM killer, segfault) the parent requeues
        # the chunk at once instead of failing it; tasks.poison bounds the repeats.
        "task_reject_on_worker_lost": True,
        # A chunk past the hard time limit is requeued, not acked: a hang is treated like
        # a crash (and, if it repeats, like a poison chunk) rather than losing the URIs.
        "task_acks_on_timeout": False,
        "task_time_limit": chunk_time_limit(vt),
        # One reserved chunk per process: chunks are long, and a message prefetched by a
        # busy process is a message another process cannot take.
        "worker_prefetch_multiplier": 1,
        # Redis drops do not stop a worker, however long they last.
        "broker_connection_max_retries": None,
        # On a broker reconnect, let running chunks finish: their records are written
        # idempotently and the un-acked message survives in Redis, so cancelling them
        # would only throw the work away.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": {
            # The last resort (heartbeats re-queue a dead worker's chunks within 40 s,
            # tasks.recovery): Redis hands ANY un-acked chunk to another worker after
            # this long, so it must exceed the slowest healthy chunk
            # (slowest_healthy_chunk; docs/RELIABILITY.md has the measured times).
            "visibility_timeout": vt,
            "unacked_restore_interval": restore_interval(vt),
            "unacked_restore_throttle": 1,
            # BRPOP the high lane before the bulk queue, always (worker.queues).
            "queue_order_strategy": QUEUE_ORDER_STRATEGY,
        },
    }
    tls = broker_ssl(settings.redis_url)
    if tls is not None:
        conf["broker_use_ssl"] = tls
    return conf
