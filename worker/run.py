"""``bulktag worker``: check the prerequisites, then hand over to Celery's worker."""

from __future__ import annotations

import os
import socket

from tasks.store import connect
from weights.checkpoint import read_pin, verify_file
from weights.fetch import UNTRAINED_WARNING
from worker.settings import Settings


def start_worker(
    settings: Settings,
    *,
    hostname: str | None = None,
    loglevel: str = "info",
    extra_args: list[str] | None = None,
) -> None:
    """Run a Celery worker for ``settings`` in this process (blocks until it stops).

    Settings are passed to the pool children through ``BULKTAG_*`` variables, so
    flags given on the command line reach every process.

    Raises:
        WeightsError, StoreUnavailable: before anything is started.
    """
    verify_file(settings.weights, settings.weights_sha256)
    connect(settings.redis_url).close()
    concurrency = settings.effective_concurrency
    env = {
        "BULKTAG_REDIS_URL": settings.redis_url,
        "BULKTAG_WEIGHTS": str(settings.weights),
        "BULKTAG_QUEUE": settings.queue,
        "BULKTAG_BATCH_SIZE": str(settings.batch_size),
        "BULKTAG_CONCURRENCY": str(concurrency),
        "BULKTAG_THREADS": str(settings.effective_threads),
    }
    if settings.weights_sha256:
        env["BULKTAG_WEIGHTS_SHA256"] = settings.weights_sha256
    os.environ.update(env)
    if _untrained(settings):
        print(f"WARNING: {settings.weights}: {UNTRAINED_WARNING}", flush=True)

    from worker.app import create_app

    app = create_app(Settings.from_env())
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--queues={settings.queue}",
        f"--hostname={hostname or 'bulktag@' + socket.gethostname()}",
        "--without-mingle",
        "--without-gossip",
        *(extra_args or []),
    ]
    app.worker_main(argv)


def _untrained(settings: Settings) -> bool:
    """Peek at the checkpoint's meta to warn at start-up (loads it; cheap for ResNet-18)."""
    from weights.checkpoint import load_checkpoint

    pin = settings.weights_sha256 or read_pin(settings.weights)
    return not load_checkpoint(settings.weights, pin).trained
