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

from tasks.decode import decode_and_preprocess
from tasks.errors import UriError
from tasks.inference import Tagger
from tasks.records import Label, Record
from tasks.store import ResultStore
from worker.settings import Settings

log = logging.getLogger(__name__)

Top3 = list[dict[str, Any]]
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

    # 4. decode + preprocess the unique unknown contents concurrently.
    limit = settings.max_pixels
    decoded = list(pool.map(lambda h: _safely(decode_and_preprocess, first_data[h], limit), todo))
    first_data.clear()  # raw bytes no longer needed; free them before the forward
    failures: dict[str, BaseException] = {}
    ready: list[tuple[str, torch.Tensor]] = []
    for h, result in zip(todo, decoded, strict=True):
        if isinstance(result, BaseException):
            failures[h] = result
        else:
            ready.append((h, result))

    # 5. batched forward over unique new content only.
    fresh: dict[str, Top3] = {}
    for start in range(0, len(ready), settings.batch_size):
        batch = ready[start : start + settings.batch_size]
        for (h, _), top in zip(batch, tagger.top3([t for _, t in batch]), strict=True):
            fresh[h] = top
    report.forwarded = len(fresh)
    store.cache_top3(model, fresh)

    # 6. one record per URI.
    outcomes: list[Outcome] = []
    charged: set[str] = set()  # hashes whose forward pass is attributed to one URI
    for (index, uri), data, digest in zip(items, fetched, hashes, strict=True):
        if digest is None:
            rec = Record(uri, None, "error", reason(data), None, model)
            outcomes.append((index, rec, False))
            continue
        if digest in failures:
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
    outcomes = [(i, Record(uri, None, "error", why, None, model_id), False) for i, uri in items]
    return outcomes, ChunkReport(uris=len(items), error=len(items))
