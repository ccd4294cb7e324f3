"""Prometheus instruments of the work itself, observed where the work happens.

The tagging code (``tasks.pipeline``, ``tasks.tag``) counts here; the worker serves the
totals (``worker.metrics``: multiprocess collection and the ``/metrics`` endpoint).
Outside a worker (unit tests, the benchmark) the same instruments simply count
in-process. Every metric is listed in docs/OPERATIONS.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from tasks.fetch import FETCHERS, scheme_of

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound=Sized)

# Seconds: a local read is ~1 ms, an S3 GET tens of ms, a stalled server up to the deadline.
_FETCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds: a batch-16 ResNet-18 forward is ~0.15-1 s on CPU, ~10 ms on a GPU.
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
RAW_DECODES = Counter(
    "bulktag_raw_decodes",
    "Camera RAW files decoded, by path: the embedded preview or a half-size demosaic",
    ["path"],
)
for _path in ("preview", "demosaic"):  # tasks.raw.RAW_PATHS
    RAW_DECODES.labels(path=_path)  # both series exist from the start, at 0
ALL = (
    IMAGES_TAGGED,
    URIS,
    DEDUPE_HITS,
    ERRORS,
    BATCH_SIZE,
    BATCH_SECONDS,
    FETCH_SECONDS,
    CHUNK_SECONDS,
    RAW_DECODES,
)


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
