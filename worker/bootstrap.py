"""Worker start-up: verify weights in the parent, load the model once in each child.

``worker_init`` runs in the main process before it forks: a missing or tampered
checkpoint stops the worker there with one clear line. ``worker_process_init`` runs in
every pool child: it sets torch's threads, loads and warms the model and registers the
process's counters in Redis, well inside ``worker_proc_alive_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from celery import signals

from tasks.errors import BulktagError
from worker.settings import Settings

if TYPE_CHECKING:
    from tasks.quantize import Calibration
    from weights.checkpoint import Checkpoint

log = logging.getLogger("bulktag.worker")

_hostname = socket.gethostname()
# Where a pool child writes why it could not load the model before it stops the worker
# (set by ``worker.run.start_worker``, which then fails with that line).
START_FAILURE_ENV = "BULKTAG_START_FAILURE_FILE"


@signals.worker_init.connect
def verify_weights_in_parent(sender: Any = None, **_: Any) -> None:
    """Refuse to start on a missing/unpinned/tampered checkpoint."""
    global _hostname
    _hostname = getattr(sender, "hostname", None) or _hostname
    from weights.checkpoint import verify_file

    settings = Settings.from_env()
    try:
        verify_file(settings.weights, settings.weights_sha256)
    except BulktagError as exc:
        log.critical("bulktag worker cannot start: %s", exc)
        sys.exit(1)


def int8_calibration(settings: Settings, ckpt: Checkpoint) -> Calibration | None:
    """The calibration an int8 worker needs (None for other precisions).

    Raises:
        ConfigError, WeightsError: see ``tasks.quantize.load_calibration``.
    """
    if settings.precision != "int8":
        return None
    from tasks.quantize import calibration_path, load_calibration

    return load_calibration(settings.int8_calibration or calibration_path(ckpt.path), ckpt)


@signals.worker_process_init.connect
def load_model_in_child(**_: Any) -> None:
    """Load, tune and warm the one model this process will use for every task.

    A checkpoint or calibration this process cannot use, or any other failure to load,
    stops the whole worker with one critical line: the parent checked only the sha256
    pin (it never imports torch), and a pool that respawned children which can never
    load would look alive but tag nothing.
    """
    try:
        load_model()
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


def load_model() -> None:
    """Load, tune, warm and install this process's model (raises what loading raises)."""
    import torch

    from tasks import inference
    from tasks.decode import configure_limits, reference_transform
    from tasks.models import ModelRegistry
    from tasks.preprocess import configure_allocator
    from tasks.store import ResultStore, connect
    from weights.checkpoint import load_checkpoint

    started = time.perf_counter()
    settings = Settings.from_env()
    torch.set_num_threads(settings.torch_threads)  # per lane; lanes x threads = budget
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)
    configure_limits(settings.max_pixels)
    configure_allocator(3 * settings.effective_decode_threads)  # a 12 MP photo per lane
    reference_transform()
    ckpt = load_checkpoint(settings.weights, settings.weights_sha256)
    tagger = inference.Tagger.from_checkpoint(
        ckpt,
        channels_last=settings.channels_last,
        device=settings.device,
        precision=settings.precision,
        decode=settings.decode,
        calibration=int8_calibration(settings, ckpt),
    )
    # One batch-1 forward: first-touch memory and code pages. oneDNN's per-shape kernel
    # set-up for the batch sizes the lanes use costs the first chunk 2-70 ms more;
    # forwarding a full 32-image batch here cost every child 0.3-1.1 s of start
    # (docs/BENCHMARKS.md, "Start").
    tagger.warm_up(1)
    inference.install(tagger)
    elapsed = time.perf_counter() - started
    store = ResultStore(connect(settings.redis_url))
    pid = os.getpid()
    store.worker_info(
        _hostname,
        pid,
        model_id=tagger.model_id,
        trained=int(tagger.trained),
        threads=torch.get_num_threads(),
        ready_at=time.time(),
        load_seconds=round(elapsed, 3),
    )
    store.worker_counters(_hostname, pid, model_loads=1)
    ModelRegistry(store.r).loaded(tagger.model_id)  # the newest load is the current model
    if not tagger.trained:
        from weights.fetch import UNTRAINED_WARNING

        log.warning("%s: %s", settings.weights, UNTRAINED_WARNING)
    note = "" if tagger.trained else " -- UNTRAINED weights: labels are meaningless"
    log.info(
        "process %d ready: model %s, %d torch threads, loaded+warmed in %.2fs%s",
        pid,
        tagger.model_id,
        torch.get_num_threads(),
        elapsed,
        note,
    )


def hostname() -> str:
    return _hostname
