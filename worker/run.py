"""``bulktag worker``: check the prerequisites, then hand over to Celery's worker."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from tasks.errors import ConfigError, WeightsError
from tasks.process import int8_calibration
from tasks.results_db import ResultsDB
from tasks.settings import Settings, check_precision
from tasks.store import connect
from weights.checkpoint import load_checkpoint, verify_file
from worker.bootstrap import START_FAILURE_ENV
from worker.delivery import chunk_time_limit, slowest_healthy_chunk
from worker.queues import consumed_queues


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
        WeightsError, StoreUnavailable: before anything is started; WeightsError also
            when a pool child could not load the model (it stops the worker).
    """
    # This process never imports torch (~570 MB and ~1.5 s here): the pool children do,
    # side by side on their own cores. What it checks: the checkpoint's sha256 pin (a
    # missing, unpinned or tampered file is one line now, not a crash per child) and
    # the flags. int8 also needs its calibration file checked against the checkpoint,
    # which takes torch; a child that still cannot load stops the worker (bootstrap).
    verify_file(settings.weights, settings.weights_sha256)
    check_precision(settings.precision, settings.device)
    if settings.precision == "int8":
        int8_calibration(settings, load_checkpoint(settings.weights, settings.weights_sha256))
    connect(settings.redis_url).close()
    warn_if_time_limit_short(settings)
    ResultsDB.open(settings.results_url)  # reachable, schema current: one line now if not
    if settings.device == "cuda":
        _require_cuda()
    concurrency = settings.effective_concurrency
    env = {
        "BULKTAG_REDIS_URL": settings.redis_url,
        "BULKTAG_RESULTS_URL": settings.results_url,
        "BULKTAG_WEIGHTS": str(settings.weights),
        "BULKTAG_QUEUE": settings.queue,
        "BULKTAG_BATCH_SIZE": str(settings.batch_size),
        "BULKTAG_CONCURRENCY": str(concurrency),
        "BULKTAG_THREADS": str(settings.effective_threads),
        "BULKTAG_METRICS_PORT": str(settings.metrics_port),
        "BULKTAG_LOG_FORMAT": settings.log_format,
        "BULKTAG_DEVICE": settings.device,
        "BULKTAG_DECODE": settings.decode,
        "BULKTAG_PRECISION": settings.precision,
    }
    if settings.weights_sha256:
        env["BULKTAG_WEIGHTS_SHA256"] = settings.weights_sha256
    if settings.int8_calibration:
        env["BULKTAG_INT8_CALIBRATION"] = str(settings.int8_calibration)
    fd, failure_file = tempfile.mkstemp(prefix="bulktag-start-failure-")
    os.close(fd)
    env[START_FAILURE_ENV] = failure_file
    os.environ.update(env)
    metrics_dir, created = prepare_metrics_dir(settings.metrics_dir)

    import worker.logs  # noqa: F401  # connects the log format before Celery sets up logging
    from worker.app import create_app

    app = create_app(Settings.from_env())
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        # The interactive lane first: BRPOP pops it before any bulk chunk (worker.queues).
        f"--queues={','.join(consumed_queues(settings.queue))}",
        f"--hostname={hostname or 'bulktag@' + socket.gethostname()}",
        "--without-mingle",
        "--without-gossip",
        *(extra_args or []),
    ]
    try:
        app.worker_main(argv)
    finally:
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        failure = Path(failure_file).read_text().strip()
        Path(failure_file).unlink(missing_ok=True)
    if failure:  # a pool child could not load the model and stopped the worker
        raise WeightsError(failure.splitlines()[0])


def warn_if_time_limit_short(settings: Settings) -> None:
    """Warn when a healthy slow chunk could outlive the hard time limit (and be re-run)."""
    limit = chunk_time_limit(settings.visibility_timeout)
    worst = slowest_healthy_chunk(settings)
    if limit < worst:
        logging.getLogger("bulktag.worker").warning(
            "BULKTAG_VISIBILITY_TIMEOUT=%d gives chunks a %d s hard time limit, under the "
            "%.0f s a healthy chunk of slow remote URIs may take at the fetch limits: such "
            "a chunk would be killed and re-run",
            settings.visibility_timeout,
            limit,
            worst,
        )


def prepare_metrics_dir(configured: Path | None) -> tuple[Path, bool]:
    """Empty (or create) the prometheus multiprocess directory and export it.

    Must run before anything imports prometheus_client: the library picks its
    multiprocess value class from ``PROMETHEUS_MULTIPROC_DIR`` at import time. Files left
    by an earlier run would add its counts to this one, so they are removed.

    Returns:
        The directory, and whether it is a temporary one this worker must remove.
    """
    created = configured is None
    path = Path(tempfile.mkdtemp(prefix="bulktag-metrics-")) if configured is None else configured
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path, created


def _require_cuda() -> None:
    """Fail in the parent when there is no GPU, without initialising CUDA before the fork
    (a CUDA context does not survive fork; NVML answers without creating one)."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "BULKTAG_DEVICE=cuda but torch sees no CUDA device "
            "(a CPU-only torch build, or no GPU visible to this container)"
        )
