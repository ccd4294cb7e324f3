"""Tag one chunk: fetch -> hash -> dedupe -> decode -> batched forward -> records.

Plain functions, no Celery: the task wrapper in ``tasks.tag`` only supplies the
process's tagger, store and thread pool. Every URI comes out with exactly one
record; a bad URI becomes an ``error`` record and never fails its neighbours.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import torch

from tasks import instruments, lanes
from tasks.errors import UriError
from tasks.inference import Tagger
from tasks.records import Label, Record, Top3
from tasks.settings import Settings
from tasks.store import ResultStore

log = logging.getLogger(__name__)

Outcome = tuple[int, Record, bool]  # (index in job, record, deduped)


@dataclass
class ChunkReport:
    """What one chunk did, for logs and worker counters."""

    uris: int = 0
    ok: int = 0
    error: int = 0
    deduped: int = 0
    forwarded: int = 0


def reason(exc: BaseException) -> str:
    """The human reason recorded for a failed URI."""
    if isinstance(exc, UriError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _safely(fn: Callable[..., Any], *args: Any) -> Any | BaseException:
    """Run ``fn`` and return its result or the exception, so one URI cannot fail many."""
    try:
        return fn(*args)
    except Exception as exc:
        if not isinstance(exc, UriError):
            log.exception("unexpected error on %r", args[0] if args else None)
        return exc


def tag_items(
    items: Sequence[tuple[int, str]],
    *,
    tagger: Tagger,
    store: ResultStore,
    settings: Settings,
    fetch: Callable[[str, Settings], bytes],
    pool: Executor,
) -> tuple[list[Outcome], ChunkReport]:
    """Tag ``items`` (``(index, uri)`` pairs) and return their outcomes and a report.

    Nothing is written here: the caller stores the outcomes in one round trip.
    """
    report = ChunkReport(uris=len(items))
    model = tagger.model_id

    # 1. fetch concurrently: network/disk latency overlaps.
    fetched = list(pool.map(lambda it: _safely(fetch, it[1], settings), items))

    # 2. hash; group indices by content.
    hashes: list[str | None] = []
    first_data: dict[str, bytes] = {}
    for data in fetched:
        if isinstance(data, BaseException):
            hashes.append(None)
            continue
        content_hash = hashlib.sha256(data).hexdigest()
        hashes.append(content_hash)
        first_data.setdefault(content_hash, data)

    # 3. dedupe against the store (any chunk, job or time) for this model id.
    known = store.cached_top3(model, list(first_data))
    todo = [h for h in first_data if h not in known]

    # 4+5. decode and forward the unique unknown contents on parallel lanes: one lane's
    # forward overlaps another's decode (tasks.lanes).
    contents = [(h, first_data[h]) for h in todo]
    first_data.clear()  # each content's bytes now live in ``contents`` only

    def forward(batch: torch.Tensor) -> list[Top3]:
        # timed_forward needs len(images) only, which a batch tensor has.
        return instruments.timed_forward(tagger.top3_batch, batch)

    fresh, failures = lanes.tag_contents(
        contents,
        tagger=tagger,
        pool=pool,
        lanes=settings.effective_lanes,
        batch_size=settings.batch_size,
        max_pixels=settings.max_pixels,
        decode=tagger.decode,
        forward=forward,
        guard=_safely,
    )
    del contents
    report.forwarded = len(fresh)
    store.cache_top3(model, fresh)

    # 6. one record per URI.
    outcomes: list[Outcome] = []
    charged: set[str] = set()  # hashes whose forward pass is attributed to one URI
    for (index, uri), data, digest in zip(items, fetched, hashes, strict=True):
        if digest is None:
            instruments.count_error(data)
            rec = Record(uri, None, "error", reason(data), None, model)
            outcomes.append((index, rec, False))
            continue
        if digest in failures:
            instruments.count_error(failures[digest])
            rec = Record(uri, digest, "error", reason(failures[digest]), None, model)
            outcomes.append((index, rec, False))
            continue
        top = known.get(digest) or fresh[digest]
        deduped = digest in known or digest in charged
        charged.add(digest)
        labels = [Label(t["label"], int(t["index"]), float(t["score"])) for t in top]
        outcomes.append((index, Record(uri, digest, "ok", None, labels, model), deduped))

    for _, rec, deduped in outcomes:
        report.ok += rec.status == "ok"
        report.error += rec.status == "error"
        report.deduped += deduped
    return outcomes, report


def fail_all(
    items: Sequence[tuple[int, str]], model_id: str, exc: BaseException
) -> tuple[list[Outcome], ChunkReport]:
    """Error outcomes for every item of a chunk that failed as a whole."""
    why = reason(exc)
    instruments.count_error(exc, len(items))
    outcomes = [(i, Record(uri, None, "error", why, None, model_id), False) for i, uri in items]
    return outcomes, ChunkReport(uris=len(items), error=len(items))
