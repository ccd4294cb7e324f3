"""ResultStore: the one store the producer, workers and API use.

Results live in a real database (``tasks.results_db``: jobs, URIs, one final record per
URI, the dedupe cache), written idempotently in one transaction per chunk. Redis carries
only work: the broker queue, chunks in flight, the job-finished pub/sub message and
worker counters; when a job ends its per-job Redis keys are deleted, so an ended job
costs Redis nothing (docs/RESULTS_DB.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from tasks import keys, sentinel
from tasks.errors import StoreUnavailable
from tasks.records import JobStatus, Record
from tasks.results_db import ResultsDB

if TYPE_CHECKING:
    from tasks.settings import Settings

# Worker clients ride out a Redis restart or failover: each command is retried with
# exponential backoff and full jitter, ~20-30 s in all, before the fault reaches the
# task (which then ends the chunk's URIs as errors or leaves it to be redelivered).
STORE_RETRIES = 10
STORE_RETRY_CAP = 5.0  # seconds: the longest single wait
# How long an ended job's chunk ledger (deliveries, chunks in flight) outlives it in Redis.
ENDED_JOB_TTL = 600  # seconds
STORE_SOCKET_TIMEOUT = 30.0  # seconds: a hung (not dead) Redis must not hang a chunk forever


def connect(url: str, *, patient: bool = False) -> redis.Redis:
    """A Redis client for ``url`` that answers with str, checked with a PING.

    Args:
        url: ``redis://`` or ``rediss://`` (TLS) URL, password included if any.
        patient: retry dropped connections and timeouts for ~30 s (workers), instead of
            redis-py's short default (CLI commands, which should fail fast).

    Raises:
        StoreUnavailable: Redis cannot be reached or refuses us.
    """
    extra: dict[str, Any] = {}
    if patient:
        extra = {
            "retry": Retry(
                ExponentialWithJitterBackoff(cap=STORE_RETRY_CAP, base=0.1), STORE_RETRIES
            ),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
            "socket_timeout": STORE_SOCKET_TIMEOUT,
        }
    if sentinel.is_sentinel(url):  # HA Redis: follow the sentinels' master (tasks/sentinel.py)
        client = sentinel.master_client(
            url, decode_responses=True, socket_connect_timeout=5, **extra
        )
    else:
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5, **extra)
    try:
        client.ping()
    except redis.AuthenticationError as exc:  # a ConnectionError subclass: test it first
        if "@" not in url:
            raise StoreUnavailable(
                f"Redis at {_safe_url(url)} requires a password: put it in the URL "
                "(redis://:PASSWORD@host:port/0)"
            ) from exc
        raise StoreUnavailable(f"Redis at {_safe_url(url)} refused our password: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"cannot reach Redis at {_safe_url(url)}: {exc}") from exc
    except redis.ResponseError as exc:
        raise StoreUnavailable(f"Redis at {_safe_url(url)} answered: {exc}") from exc
    return client


def _safe_url(url: str) -> str:
    """The URL with any password masked, for error messages and logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def open_store(settings: Settings, *, patient: bool = False) -> ResultStore:
    """The store for ``settings``: Redis at ``redis_url``, results at ``results_url``.

    Raises:
        StoreUnavailable: Redis or the results database cannot be reached.
        ConfigError: a bad results URL, or a database schema this bulktag does not know.
    """
    return ResultStore(
        connect(settings.redis_url, patient=patient), ResultsDB.open(settings.results_url)
    )


def _results_from_env() -> ResultsDB:
    from tasks.settings import Settings

    return ResultsDB.open(Settings.from_env().results_url)


class ResultStore:
    """Jobs, per-URI records and the result cache (SQL), plus work state (Redis)."""

    def __init__(self, client: redis.Redis, db: ResultsDB | None = None) -> None:
        """Args:
        client: Redis (work: queue, chunks in flight, pub/sub, worker counters).
        db: the results database (default: ``BULKTAG_RESULTS_URL``, see tasks.settings).
        """
        self.r = client
        self._db = db

    @property
    def db(self) -> ResultsDB:
        """The results database, opened on first use when none was given (so a process
        that only touches work state, e.g. a worker registering its counters, never
        opens it)."""
        if self._db is None:
            self._db = _results_from_env()
        return self._db

    def _job_ended(self, job_id: str, state: str) -> None:
        """Announce the end and let the job's work keys expire: Redis keeps nothing for it.

        The chunk ledger stays ``ENDED_JOB_TTL`` seconds for diagnosis (a late duplicate
        chunk, ``bulktag status`` right after the end), then Redis holds no key of the job.
        Best effort: the database already holds the outcome, and ``Job.wait`` also polls.
        """
        with contextlib.suppress(redis.RedisError):
            pipe = self.r.pipeline(transaction=False)
            pipe.publish(keys.job_finished_channel(job_id), state)
            for key in (keys.job_deliveries(job_id), keys.job_in_flight(job_id)):
                pipe.expire(key, ENDED_JOB_TTL)
            pipe.execute()

    # -- jobs --------------------------------------------------------------------------
    def create_job(self, job_id: str, chunk_size: int, source: str) -> bool:
        """Create the job; False if a job with that id already exists."""
        return self.db.create_job(job_id, chunk_size, source)

    def add_uris(
        self,
        job_id: str,
        first: int,
        chunks: Sequence[Sequence[str]],
        *,
        skipped: int | None = None,
    ) -> None:
        """Book ``chunks`` as the job's URIs ``first``, ``first + 1``, ... (before publishing
        them, so a worker never sees a chunk the job does not count yet)."""
        self.db.add_uris(job_id, first, chunks, skipped=skipped)

    def note_skipped(self, job_id: str, count: int) -> None:
        """Record how many files the walk saw but did not take (not images)."""
        self.db.note_skipped(job_id, count)

    def finish_enumeration(self, job_id: str) -> None:
        if self.db.finish_enumeration(job_id):
            self._job_ended(job_id, "done")

    def abort_enumeration(self, job_id: str, sent: int, reason: str) -> None:
        """End a submission that failed after ``sent`` URIs were enqueued.

        The job keeps what was sent (total and URI list cut back to it, in case a
        batch was booked but not published), records why it stopped, and runs to
        ``done`` like any other job instead of sitting in ``enumerating`` forever.
        """
        if self.db.abort_enumeration(job_id, sent, reason):
            self._job_ended(job_id, "done")

    def delete_job(self, job_id: str, *, cache: bool = False) -> bool:
        """Delete the job's records, URIs and work keys (with ``cache``, also the cache
        entries only this job used). False if the database had no such job."""
        found = self.db.delete_job(job_id, cache=cache)
        with contextlib.suppress(redis.RedisError):
            self.r.delete(keys.job_deliveries(job_id), keys.job_in_flight(job_id))
        return found

    def prune(self, older_than_days: float, *, cache: bool = False) -> tuple[int, int]:
        """Delete jobs finished more than ``older_than_days`` ago; (jobs, cache entries)."""
        return self.db.prune(older_than_days * 86400.0, cache=cache)

    def cancel_job(self, job_id: str) -> str:
        """Cancel the job if it is still going; return the state it was in.

        Workers skip the chunks of a cancelled job that they have not started; chunks
        already running finish and keep their records. A job that is already done or
        cancelled is left as it is.

        Raises:
            JobNotFound: no such job.
        """
        state = self.db.cancel_job(job_id)
        if state in ("enumerating", "running"):
            self._job_ended(job_id, "cancelled")
        return state

    def begin_retry_round(self, job_id: str) -> int:
        """Number the next retry of this job's URIs (1, 2, ...): it keys fresh chunk ids."""
        return self.db.begin_retry_round(job_id)

    def reopen_errors(self, job_id: str, indices: Sequence[int]) -> int:
        """Atomically delete and un-count the error records at ``indices``.

        Returns:
            How many records were reopened (indices without an error record are skipped).
        """
        return self.db.reopen_errors(job_id, indices)

    def job_state(self, job_id: str) -> str | None:
        return self.db.job_state(job_id)

    def status(self, job_id: str) -> JobStatus:
        """The job's status snapshot. Raises JobNotFound."""
        return self.db.status(job_id)

    def list_jobs(self, limit: int = 50) -> list[str]:
        return self.db.list_jobs(limit)

    def job_uri(self, job_id: str, index: int) -> str | None:
        """The URI at ``index`` of the job (None past its end): how the API ties a
        thumbnail request to a URI that belongs to the job and to nothing else."""
        if index < 0:
            return None
        return self.db.job_uri(job_id, index)

    def iter_uris(self, job_id: str, batch: int = 1000) -> Iterator[str]:
        """The job's URIs in submission order, ``batch`` at a time (reprocess)."""
        return self.db.iter_uris(job_id, batch)

    def annotate_job(self, job_id: str, **fields: str) -> None:
        """Add descriptive fields to the job (``reprocess_of``, ``schedule``, ``model``)."""
        self.db.annotate_job(job_id, **fields)

    def job_field(self, job_id: str, name: str) -> str | None:
        return self.db.job_field(job_id, name)

    def reprocess_versions(self, root_job_id: str) -> dict[str, str]:
        """``{model id: job id}`` of the reprocess jobs of ``root_job_id`` (database)."""
        return self.db.reprocess_versions(root_job_id)

    def model_of(self, job_id: str) -> str | None:
        """The model id of the job's first stored record (None before any)."""
        return self.db.model_of(job_id)

    # -- records -----------------------------------------------------------------------
    def record_outcomes(self, job_id: str, outcomes: Iterable[tuple[int, Record, bool]]) -> None:
        """Write final records ``(index, record, deduped)`` idempotently, in one transaction."""
        if self.db.record_outcomes(job_id, outcomes):
            self._job_ended(job_id, "done")

    def records(self, job_id: str, batch: int = 1000) -> Iterator[tuple[int, str, Record | None]]:
        """Yield ``(index, uri, record or None if pending)`` in submission order, streamed."""
        return self.db.records(job_id, batch)

    def records_between(
        self, job_id: str, start: int, stop: int
    ) -> list[tuple[int, str, Record | None]]:
        """``(index, uri, record or None if pending)`` for indices in ``[start, stop)``."""
        return self.db.records_between(job_id, start, stop)

    def search(
        self,
        indices: Sequence[int],
        *,
        min_score: float = 0.0,
        top1: bool = False,
        job_id: str | None = None,
        model_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[tuple[str, int, Record]]:
        """``(job id, index in job, record)`` of ok records whose top-3 (or top-1 with
        ``top1``) holds one of ``indices`` scoring at least ``min_score``, newest first,
        answered from the label index."""
        return self.db.search(
            indices,
            min_score=min_score,
            top1=top1,
            job_id=job_id,
            model_id=model_id,
            limit=limit,
            offset=offset,
        )

    def label_counts(
        self, *, model_id: str | None = None, job_id: str | None = None
    ) -> dict[int, int]:
        """How many ok records hold each class index anywhere in their top-3."""
        return self.db.label_counts(model_id=model_id, job_id=job_id)

    # -- dedupe cache ------------------------------------------------------------------
    def cached_top3(self, model_id: str, hashes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored top-3 lists for the hashes that have one under ``model_id``."""
        return self.db.cached_top3(model_id, hashes)

    def cache_top3(self, model_id: str, results: dict[str, list[dict[str, Any]]]) -> None:
        self.db.cache_top3(model_id, results)

    def cache_entries(self, model_id: str | None = None) -> int:
        """How many dedupe-cache entries there are (under ``model_id``, or all)."""
        return self.db.cache_entries(model_id)

    def clear_cache(self, model_id: str | None = None) -> int:
        """Drop dedupe-cache entries (under ``model_id``, or all); returns how many."""
        return self.db.clear_cache(model_id)

    # -- worker counters ---------------------------------------------------------------
    def worker_counters(self, hostname: str, pid: int, **increments: int) -> None:
        key = keys.worker(hostname, pid)
        pipe = self.r.pipeline()
        pipe.sadd(keys.workers(), key)
        for name, value in increments.items():
            pipe.hincrby(key, name, value)
        pipe.execute()

    def worker_info(self, hostname: str, pid: int, **fields: str | int | float) -> None:
        key = keys.worker(hostname, pid)
        pipe = self.r.pipeline()
        pipe.sadd(keys.workers(), key)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's invariant key
        pipe.execute()

    def all_worker_stats(self) -> dict[str, dict[str, str]]:
        names: list[str] = sorted(self.r.smembers(keys.workers()))  # type: ignore[arg-type]
        pipe = self.r.pipeline()
        for name in names:
            pipe.hgetall(name)
        return dict(zip(names, pipe.execute(), strict=True))
