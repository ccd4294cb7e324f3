"""The Celery app. Producers and workers share it; importing it never imports torch.

Delivery settings, and why (see docs/ and README "Delivery guarantees"):
- JSON only, both ways: a pickled message is refused, never executed.
- A malformed broker message (wrapper not JSON, no delivery tag, bad base64) is logged
  and dropped by ``worker.broker``'s transport instead of breaking the connection.
- Late acks, requeue on a lost worker, requeue on the hard time limit, prefetch 1, the
  visibility timeout and kombu's restore sweep: ``worker.delivery`` (one reason per
  setting) and docs/RELIABILITY.md (the fault each one answers, and its test).
- No result backend: results go to bulktag's own store, written idempotently.
- ``worker_send_task_events``: Flower sees tasks (a PUBLISH per task; dropped unheard).
- Included with the worker: structured logs (``worker.logs``), Prometheus metrics
  (``worker.metrics``), start-up (``worker.bootstrap``) and the chunk task (``tasks.tag``).

Nothing is built at import time: ``import worker.app`` (and so ``import producer``) never
reads the environment. ``app`` (for ``celery -A worker.app``) is built on first access.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery

from tasks.sentinel import broker_settings
from tasks.settings import Settings
from worker.broker import transport_for
from worker.delivery import delivery_conf

# What a tagging worker loads: log format, metrics endpoint, start-up, heartbeats and
# dead-worker recovery (``worker.heartbeat``), the chunk task.
WORKER_MODULES = (
    "worker.logs",
    "worker.metrics",
    "worker.bootstrap",
    "worker.heartbeat",
    "tasks.tag",
)


def create_app(
    settings: Settings | None = None, *, include: tuple[str, ...] = WORKER_MODULES
) -> Celery:
    """A Celery app for ``settings`` (default: from the environment).

    Args:
        settings: broker and queue settings.
        include: modules a worker of this app imports (tasks and signal handlers); a
            producer that only sends by name never imports them.
    """
    settings = settings or Settings.from_env()
    broker_url, sentinel_options = broker_settings(settings.redis_url)
    app = Celery("bulktag", include=list(include))
    app.conf.update(
        broker_url=broker_url,
        # kombu's Redis transport, refusing malformed messages (worker.broker)
        broker_transport=transport_for(broker_url),
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        # Model load + warm-up runs in worker_process_init; Celery's 4 s default is tight
        # on a loaded 2-core box.
        worker_proc_alive_timeout=60,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        worker_send_task_events=True,
    )
    app.conf.update(delivery_conf(settings))
    app.conf.broker_transport_options.update(sentinel_options)  # master_name for sentinel://
    app.bulktag_settings = settings
    return app


@cache
def default_app() -> Celery:
    """The app for settings from the environment, built once (``celery -A worker.app``)."""
    return create_app()


def __getattr__(name: str) -> Any:
    """``worker.app.app``, built lazily so importing this module reads no environment."""
    if name == "app":
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
