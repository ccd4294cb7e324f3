"""Incremental runs: submit only what is new, changed, or tagged by another model.

One run of a schedule (beat's ``bulktag.run_schedule`` task, or ``bulktag schedule
run NAME``) does, in order:

1. takes the schedule's lock, so two runs never enumerate at once;
2. looks at the previous run's job: still going -> this run is skipped (cron's usual
   no-overlap rule); finished -> its records are folded into the index
   (``tasks.source_index``);
3. lists the sources *with fingerprints* (``mtime_ns:size`` for local files, the ETag
   from the S3 listing, nothing for HTTP) and keeps the URIs whose index entry is
   missing, has another fingerprint, or names another model than the current one;
4. submits those as a new job ``<schedule>-<UTC time>``; no job at all when nothing
   changed. An unchanged source therefore costs a listing and no download or forward.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import chain, islice
from typing import Any

from producer.sources import Selection, iter_source
from producer.submit import submit
from tasks.errors import ConfigError, JobNotFound, UriError
from tasks.fetch import local_path
from tasks.model_registry import ModelRegistry
from tasks.settings import Settings
from tasks.source_index import SourceIndex
from tasks.store import ResultStore, open_store

log = logging.getLogger("bulktag.schedule")

Pair = tuple[str, str | None]  # (uri, fingerprint or None)
COMPARE_BATCH = 1000  # URIs per index lookup (one HMGET)


@dataclass
class RunReport:
    """What one scheduled run did."""

    schedule: str
    job: str | None = None
    listed: int = 0
    enqueued: int = 0
    unchanged: int = 0
    folded: int = 0
    model: str | None = None
    skipped: str | None = None  # why nothing was looked at, if so

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- fingerprints --------------------------------------------------------------------------
def local_fingerprint(uri: str) -> str | None:
    """``mtime_ns:size`` of a local path (None if it cannot be stat'ed: the worker says why)."""
    try:
        st = os.stat(local_path(uri))
    except (OSError, UriError):
        return None
    return f"{st.st_mtime_ns}:{st.st_size}"


def s3_fingerprints(
    source: str, settings: Settings, selection: Selection | None = None
) -> Iterator[Pair]:
    """Every image under an ``s3://`` prefix with its ETag, from the listing alone.

    ``selection`` (if given) counts the keys that are not images.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from producer.s3 import PAGE_SIZE, is_image_key
    from tasks.fetch_s3 import parse_s3_uri, s3_client, s3_error

    try:
        bucket, key = parse_s3_uri(source)
    except UriError as exc:
        raise ConfigError(str(exc)) from None
    prefix = key if not key or key.endswith("/") else key + "/"
    pages = (
        s3_client(settings)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE_SIZE})
    )
    takes = selection.takes_key if selection is not None else is_image_key
    try:
        for page in pages:
            for obj in page.get("Contents", ()):
                if not obj["Key"].endswith("/") and takes(obj["Key"]):
                    yield f"s3://{bucket}/{obj['Key']}", f"etag:{obj['ETag'].strip(chr(34))}"
    except (ClientError, BotoCoreError) as exc:
        where = f"s3://{bucket}/{prefix}"
        raise ConfigError(f"cannot list {where}: {s3_error(exc, where)}") from None


def fingerprinted(
    sources: Iterable[str], settings: Settings, selection: Selection | None = None
) -> Iterator[Pair]:
    """``(uri, fingerprint)`` for every URI the sources name, streamed.

    ``selection`` counts the files folder walks and listings leave out (not images).
    """
    from producer.s3 import is_image_key

    for source in sources:
        if source.startswith("s3://") and not is_image_key(source.split("/", 3)[-1]):
            yield from s3_fingerprints(source, settings, selection)
            continue
        for uri in iter_source(source, settings=settings, selection=selection):
            local = "://" not in uri or uri.startswith("file://")
            yield uri, local_fingerprint(uri) if local else None


# -- one run -------------------------------------------------------------------------------
def run_incremental(
    schedule: str,
    sources: Iterable[str],
    *,
    settings: Settings | None = None,
    chunk_size: int | None = None,
    model: str | None = None,
) -> RunReport:
    """Run ``schedule`` once over ``sources``: submit what changed since the last run.

    Args:
        schedule: the schedule's name (its index and job ids are named after it).
        sources: what to look at, as ``bulktag submit`` takes them.
        settings: Redis, queue, chunk size (default: from the environment).
        chunk_size: URIs per task (default ``BULKTAG_CHUNK_SIZE``).
        model: compare against this model id instead of the current one.

    Returns:
        The run's report; ``job`` is None when nothing needed tagging.

    Raises:
        ConfigError: a source is missing or cannot be listed.
        StoreUnavailable: Redis cannot be reached.
    """
    settings = settings or Settings.from_env()
    store = open_store(settings)
    index = SourceIndex(store.r, schedule)
    report = RunReport(schedule)
    if not index.lock(settings.visibility_timeout):
        report.skipped = "another run of this schedule is enumerating"
        return report
    try:
        if reason := _settle_previous(store, index, report):
            report.skipped = reason
            return report
        report.model = model or ModelRegistry(store.r).current()
        _submit_changed(store, index, list(sources), settings, chunk_size, report)
    finally:
        index.unlock()
    return report


def _settle_previous(store: ResultStore, index: SourceIndex, report: RunReport) -> str | None:
    """Fold the previous run's finished job into the index; a reason to skip if it runs."""
    state = index.state()
    last = state.get("last_job")
    if not last or state.get("folded") == "1":
        return None
    try:
        status = store.status(last)
    except JobNotFound:  # deleted by an operator: nothing to fold
        index.record_run(folded="1", last_run_at=state.get("last_run_at", time.time()))
        return None
    if not status.finished:
        return f"previous run {last} is still {status.state} ({status.pending} pending)"
    report.folded = index.fold(store, last)
    index.record_run(folded="1", last_run_at=state.get("last_run_at", time.time()))
    return None


def _submit_changed(
    store: ResultStore,
    index: SourceIndex,
    sources: list[str],
    settings: Settings,
    chunk_size: int | None,
    report: RunReport,
) -> None:
    job_id = f"{index.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    if store.job_state(job_id) is not None:  # two runs in one second
        job_id += f"-{time.time_ns() % 1_000_000:06d}"

    selection = Selection()  # the job records what the walk skipped, as submit's does

    def changed() -> Iterator[str]:
        pairs = fingerprinted(sources, settings, selection)
        while batch := list(islice(pairs, COMPARE_BATCH)):
            report.listed += len(batch)
            todo = index.changed(batch, report.model)
            report.unchanged += len(batch) - len(todo)
            index.hold_fingerprints(job_id, todo)
            yield from (uri for uri, _ in todo)

    stream = changed()
    first = next(stream, None)
    if first is not None:
        job = submit(
            sources,
            job=job_id,
            chunk_size=chunk_size,
            settings=settings,
            uris=chain([first], stream),
            selection=selection,
        )
        store.annotate_job(job.id, schedule=index.name)
        report.job = job.id
        report.enqueued = job.status().total
    index.record_run(
        last_job=report.job or index.state().get("last_job", ""),
        folded="0" if report.job else "1",
        last_enqueued=report.enqueued,
        last_unchanged=report.unchanged,
        last_listed=report.listed,
    )
    log.info(
        "schedule %s: %d listed, %d unchanged, %d enqueued as %s (model %s)",
        index.name,
        report.listed,
        report.unchanged,
        report.enqueued,
        report.job or "no job",
        report.model or "unknown",
    )
