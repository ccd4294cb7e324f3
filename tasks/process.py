"""This worker process's resources: its settings, store clients, I/O pool and its model.

Each Celery pool child builds these once and keeps them for every chunk it runs. The
model is loaded by ``load_model`` (called from ``worker.bootstrap``'s
``worker_process_init`` handler, or lazily by the first chunk under a bare
``celery worker``); the clients and the thread pool are created on first use, after the
fork, because neither sockets nor threads survive one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING

from tasks.chunks import ChunkLedger
from tasks.model_labels import ModelLabels
from tasks.model_registry import ModelRegistry
from tasks.settings import Settings
from tasks.store import ResultStore, connect, open_store

if TYPE_CHECKING:
    from tasks.inference import Tagger
    from tasks.quantize import Calibration
    from weights.checkpoint import Checkpoint

log = logging.getLogger("bulktag.worker")

_hostname = socket.gethostname()


def set_hostname(name: str) -> None:
    """Use Celery's node name (``celery@host``) in worker records instead of the host's."""
    global _hostname
    _hostname = name


def hostname() -> str:
    """The name this worker's processes register their counters under."""
    return _hostname


@cache
def settings() -> Settings:
    """The worker's settings, read once from the environment."""
    return Settings.from_env()


@cache
def store() -> ResultStore:
    """The results store, with a client that rides out short Redis outages."""
    return open_store(settings(), patient=True)


@cache
def ledger() -> ChunkLedger:
    """The delivery ledger: which chunk this process holds, and how often it was tried."""
    return ChunkLedger(store().r)


@cache
def io_pool() -> ThreadPoolExecutor:
    """Threads for fetching and decoding (one per lane, at least ``fetch_threads``)."""
    s = settings()
    return ThreadPoolExecutor(max(s.effective_lanes, s.fetch_threads), "bulktag-io")


def tagger() -> Tagger:
    """This process's model, loading it first if no bootstrap did (a bare celery worker)."""
    from tasks import inference  # torch: imported by pool children only, never the parent

    current = inference.current()
    if current is None:
        load_model()
        current = inference.current()
    assert current is not None
    return current


def int8_calibration(settings: Settings, ckpt: Checkpoint) -> Calibration | None:
    """The calibration an int8 worker needs (None for other precisions).

    Raises:
        ConfigError, WeightsError: see ``tasks.quantize.load_calibration``.
    """
    if settings.precision != "int8":
        return None
    from tasks.quantize import calibration_path, load_calibration

    return load_calibration(settings.int8_calibration or calibration_path(ckpt.path), ckpt)


def load_model() -> None:
    """Load, tune, warm and install this process's model (raises what loading raises)."""
    import torch

    from tasks import inference
    from tasks.decode import configure_limits, reference_transform
    from tasks.preprocess import configure_allocator
    from weights.checkpoint import load_checkpoint

    started = time.perf_counter()
    s = Settings.from_env()
    torch.set_num_threads(s.torch_threads)  # per lane; lanes x threads = budget
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)
    configure_limits(s.max_pixels)
    configure_allocator(3 * s.effective_lanes)  # a 12 MP photo per lane
    reference_transform()
    ckpt = load_checkpoint(s.weights, s.weights_sha256)
    loaded = inference.Tagger.from_checkpoint(
        ckpt,
        channels_last=s.channels_last,
        device=s.device,
        precision=s.precision,
        decode=s.decode,
        calibration=int8_calibration(s, ckpt),
    )
    # One batch-1 forward: first-touch memory and code pages. oneDNN's per-shape kernel
    # set-up for the batch sizes the lanes use costs the first chunk 2-70 ms more;
    # forwarding a full 32-image batch here cost every child 0.3-1.1 s of start
    # (docs/BENCHMARKS.md, "Start").
    loaded.warm_up(1)
    inference.install(loaded)
    elapsed = time.perf_counter() - started
    _register(s, loaded, elapsed, torch.get_num_threads())


def _register(s: Settings, loaded: Tagger, elapsed: float, threads: int) -> None:
    """Announce the loaded model: worker record, counters, the model registry, the log."""
    results = ResultStore(connect(s.redis_url))  # Redis only: the database opens lazily
    pid = os.getpid()
    results.worker_info(
        _hostname,
        pid,
        model_id=loaded.model_id,
        trained=int(loaded.trained),
        threads=threads,
        ready_at=time.time(),
        load_seconds=round(elapsed, 3),
    )
    results.worker_counters(_hostname, pid, model_loads=1)
    ModelRegistry(results.r).loaded(loaded.model_id)  # the newest load is the current model
    ModelLabels(results.r).save(loaded.model_id, loaded.categories)  # search, labels, API
    if not loaded.trained:
        from weights.fetch import UNTRAINED_WARNING

        log.warning("%s: %s", s.weights, UNTRAINED_WARNING)
    note = "" if loaded.trained else " -- UNTRAINED weights: labels are meaningless"
    log.info(
        "process %d ready: model %s, %d torch threads, loaded+warmed in %.2fs%s",
        pid,
        loaded.model_id,
        threads,
        elapsed,
        note,
    )
