"""Worker start-up: verify weights in the parent, load the model once in each child.

``worker_init`` runs in the main process before it forks: a missing or tampered
checkpoint stops the worker there with one clear line. ``worker_process_init`` runs in
every pool child: it loads this process's model (``tasks.process.load_model``: torch
threads, load, warm-up, counters in Redis), well inside ``worker_proc_alive_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Any

from celery import signals

from tasks import process
from tasks.errors import BulktagError
from tasks.settings import Settings

log = logging.getLogger("bulktag.worker")

# Where a pool child writes why it could not load the model before it stops the worker
# (set by ``worker.run.start_worker``, which then fails with that line).
START_FAILURE_ENV = "BULKTAG_START_FAILURE_FILE"


@signals.worker_init.connect
def verify_weights_in_parent(sender: Any = None, **_: Any) -> None:
    """Refuse to start on a missing/unpinned/tampered checkpoint."""
    if name := getattr(sender, "hostname", None):
        process.set_hostname(name)
    from weights.checkpoint import verify_file

    settings = Settings.from_env()
    try:
        verify_file(settings.weights, settings.weights_sha256)
    except BulktagError as exc:
        log.critical("bulktag worker cannot start: %s", exc)
        sys.exit(1)


@signals.worker_process_init.connect
def load_model_in_child(**_: Any) -> None:
    """Load, tune and warm the one model this process will use for every task.

    A checkpoint or calibration this process cannot use, or any other failure to load,
    stops the whole worker with one critical line: the parent checked only the sha256
    pin (it never imports torch), and a pool that respawned children which can never
    load would look alive but tag nothing.
    """
    try:
        process.load_model()
    except Exception as exc:  # whatever it is, a respawned child would meet it again
        why = str(exc)
        if not isinstance(exc, BulktagError):
            log.exception("loading the model failed")
            why = f"loading the model failed: {type(exc).__name__}: {exc}"
        log.critical("bulktag worker cannot start: %s", why)
        if failure_file := os.environ.get(START_FAILURE_ENV):  # `bulktag worker` reports it
            with contextlib.suppress(OSError), open(failure_file, "a") as fh:
                fh.write(f"worker cannot start: {why}\n")
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getppid(), signal.SIGQUIT)  # cold shutdown, exit status 1
        os._exit(1)
