"""Celery delivery settings: at-least-once chunks over Redis, each setting with its reason.

docs/RELIABILITY.md has the same table with the fault each setting answers and the
test that proves it; keep the two in step.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tasks.settings import Settings

# The hard time limit is this share of the visibility timeout: a hung chunk is killed
# (and requeued) by its own worker before Redis would hand a copy to a second worker.
TIME_LIMIT_SHARE = 0.9


def chunk_time_limit(visibility_timeout: int) -> int:
    """Seconds one chunk may run before its pool process is killed and it is requeued."""
    return max(1, int(visibility_timeout * TIME_LIMIT_SHARE))


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
            # Redis hands an un-acked chunk to another worker after this long; it must
            # exceed the slowest chunk plus the store's ~30 s retry budget.
            "visibility_timeout": vt,
            "unacked_restore_interval": restore_interval(vt),
            "unacked_restore_throttle": 1,
        },
    }
    tls = broker_ssl(settings.redis_url)
    if tls is not None:
        conf["broker_use_ssl"] = tls
    return conf
