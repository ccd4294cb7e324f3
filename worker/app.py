"""The Celery app. Producers and workers share it; importing it never imports torch.

Delivery settings, and why (see docs/ and README "Delivery guarantees"):
- JSON only, both ways: a pickled message is refused, never executed.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a chunk is acknowledged after it
  is stored, so a worker killed mid-chunk leaves it on the queue for another worker.
- ``worker_prefetch_multiplier=1``: chunks are long; one reserved chunk per process
  keeps work spread across processes instead of piled on the first.
- ``visibility_timeout``: Redis re-delivers an un-acked chunk after this long; it must
  exceed the slowest chunk or a healthy chunk would run twice (harmless, but wasted).
- No result backend: results go to bulktag's own store, written idempotently.
"""

from __future__ import annotations

from celery import Celery

from worker.settings import Settings

TASK_TAG_CHUNK = "bulktag.tag_chunk"


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    app = Celery("bulktag", include=["worker.bootstrap", "tasks.tag"])
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        # Model load + warm-up runs in worker_process_init; Celery's 4 s default is tight
        # on a loaded 2-core box.
        worker_proc_alive_timeout=60,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
    )
    app.bulktag_settings = settings
    return app


app = create_app()
