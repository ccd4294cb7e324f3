"""ResultStore: every read and write of jobs, records and the dedupe cache in Redis.

Counting is per URI index, never a blind increment: a record is written with HSETNX
inside a Lua script that bumps ``ok``/``error``/``deduped`` only when the field was new,
so a chunk delivered twice leaves the same records and the same counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from tasks import keys, sentinel
from tasks.errors import JobNotFound, StoreUnavailable
from tasks.records import JobStatus, Record
from tasks.store_search import LabelScan

# KEYS: job hash, records hash. ARGV: now, then (index, status, deduped, json) * n.
# Each script that ends a job also publishes on ``keys.job_finished_channel``.
_RECORD_LUA = """
-- A chunk of a deleted job must not re-create a partial job (and block its id).
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
local ok, err, dd = 0, 0, 0
for i = 2, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 3]) == 1 then
    if ARGV[i + 1] == 'ok' then ok = ok + 1 else err = err + 1 end
    if ARGV[i + 2] == '1' then dd = dd + 1 end
  end
end
if ok + err > 0 then
  redis.call('HINCRBY', KEYS[1], 'ok', ok)
  redis.call('HINCRBY', KEYS[1], 'error', err)
  redis.call('HINCRBY', KEYS[1], 'deduped', dd)
  redis.call('HSETNX', KEYS[1], 'first_result_at', ARGV[1])
  redis.call('HSET', KEYS[1], 'last_progress_at', ARGV[1])
end
local h = redis.call('HMGET', KEYS[1], 'state', 'total', 'ok', 'error')
if h[1] == 'running' and tonumber(h[3]) + tonumber(h[4]) >= tonumber(h[2]) then
  redis.call('HSET', KEYS[1], 'state', 'done', 'finished_at', ARGV[1])
  redis.call('PUBLISH', KEYS[1] .. ':finished', 'done')
end
return {ok, err, dd}
"""

# KEYS: job hash. ARGV: now. Ends enumeration; the job may already be complete.
_FINISH_ENUM_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'enumerating' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running')
local h = redis.call('HMGET', KEYS[1], 'total', 'ok', 'error')
if tonumber(h[2]) + tonumber(h[3]) >= tonumber(h[1]) then
  redis.call('HSET', KEYS[1], 'state', 'done', 'finished_at', ARGV[1])
  redis.call('PUBLISH', KEYS[1] .. ':finished', 'done')
end
return 1
"""


# KEYS: job hash. ARGV: now. Cancels a job that is still going; returns the prior state.
_CANCEL_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'enumerating' or state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
  redis.call('PUBLISH', KEYS[1] .. ':finished', 'cancelled')
end
return state
"""

# KEYS: job hash, records hash. ARGV: index * n. Reopens error records for a retry:
# each listed record that is an error is deleted and un-counted, in one atomic step,
# so ok + error + pending == total holds at every instant. The retried URI is pending
# again until a worker writes its new record through _RECORD_LUA's HSETNX, which is
# therefore still the only way a record is ever written. A finished job runs again.
_REOPEN_ERRORS_LUA = """
local n = 0
for i = 1, #ARGV do
  local raw = redis.call('HGET', KEYS[2], ARGV[i])
  if raw and cjson.decode(raw)['status'] == 'error' then
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'error', -n)
  if redis.call('HGET', KEYS[1], 'state') == 'done' then
    redis.call('HSET', KEYS[1], 'state', 'running')
    redis.call('HDEL', KEYS[1], 'finished_at')
  end
end
return n
"""

# Worker clients ride out a Redis restart or failover: each command is retried with
# exponential backoff and full jitter, ~20-30 s in all, before the fault reaches the
# task (which then ends the chunk's URIs as errors or leaves it to be redelivered).
STORE_RETRIES = 10
STORE_RETRY_CAP = 5.0  # seconds: the longest single wait
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


class ResultStore(LabelScan):
    """Jobs, per-URI records and the (model id, sha256) result cache.

    Label search (``search``, ``label_counts``) comes from ``LabelScan``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._record = client.register_script(_RECORD_LUA)
        self._finish_enum = client.register_script(_FINISH_ENUM_LUA)
        self._cancel = client.register_script(_CANCEL_LUA)
        self._reopen_errors = client.register_script(_REOPEN_ERRORS_LUA)

    # -- jobs --------------------------------------------------------------------------
    def create_job(self, job_id: str, chunk_size: int, source: str) -> bool:
        """Create the job hash; False if a job with that id already exists."""
        now = time.time()
        fields: dict[str, str | int | float] = {
            "job": job_id,
            "state": "enumerating",
            "total": 0,
            "ok": 0,
            "error": 0,
            "deduped": 0,
            "chunks": 0,
            "chunk_size": chunk_size,
            "created_at": now,
            "source": source,
        }
        if not self.r.hsetnx(keys.job(job_id), "job", job_id):
            return False
        pipe = self.r.pipeline()
        pipe.hset(keys.job(job_id), mapping=fields)  # type: ignore[arg-type]  # invariant key
        pipe.zadd(keys.jobs(), {job_id: now})
        pipe.execute()
        return True

    def add_chunk(self, pipe: Any, job_id: str, uris: Sequence[str]) -> None:
        """Queue (on ``pipe``) the bookkeeping for one more chunk of ``uris``."""
        pipe.rpush(keys.job_uris(job_id), *uris)
        pipe.hincrby(keys.job(job_id), "total", len(uris))
        pipe.hincrby(keys.job(job_id), "chunks", 1)

    def note_skipped(self, pipe: Any, job_id: str, count: int) -> None:
        """Queue (on ``pipe``) the count of files the walk saw but did not take."""
        pipe.hset(keys.job(job_id), "skipped", count)

    def finish_enumeration(self, job_id: str) -> None:
        self._finish_enum(keys=[keys.job(job_id)], args=[time.time()])

    def abort_enumeration(self, job_id: str, sent: int, reason: str) -> None:
        """End a submission that failed after ``sent`` URIs were enqueued.

        The job keeps what was sent (total and URI list cut back to it, in case a
        batch was booked but not published), records why it stopped, and runs to
        ``done`` like any other job instead of sitting in ``enumerating`` forever.
        """
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.job(job_id), mapping={"total": sent, "submit_error": reason[:500]})
        pipe.ltrim(keys.job_uris(job_id), 0, sent - 1)
        pipe.execute()
        self.finish_enumeration(job_id)

    def delete_job(self, job_id: str) -> None:
        self.r.delete(
            keys.job(job_id),
            keys.job_uris(job_id),
            keys.job_records(job_id),
            keys.job_deliveries(job_id),
            keys.job_in_flight(job_id),
        )
        self.r.zrem(keys.jobs(), job_id)

    def cancel_job(self, job_id: str) -> str:
        """Cancel the job if it is still going; return the state it was in.

        Workers skip the chunks of a cancelled job that they have not started; chunks
        already running finish and keep their records. A job that is already done or
        cancelled is left as it is.

        Raises:
            JobNotFound: no such job.
        """
        self.status(job_id)  # raises JobNotFound
        return str(self._cancel(keys=[keys.job(job_id)], args=[time.time()]))

    def begin_retry_round(self, job_id: str) -> int:
        """Number the next retry of this job's URIs (1, 2, ...): it keys fresh chunk ids."""
        return int(self.r.hincrby(keys.job(job_id), "retry_round", 1))

    def reopen_errors(self, job_id: str, indices: Sequence[int]) -> int:
        """Atomically delete and un-count the error records at ``indices`` (see the Lua).

        Returns:
            How many records were reopened (indices without an error record are skipped).
        """
        if not indices:
            return 0
        args = [str(i) for i in indices]
        keys_ = [keys.job(job_id), keys.job_records(job_id)]
        return int(self._reopen_errors(keys=keys_, args=args))

    def job_state(self, job_id: str) -> str | None:
        return self.r.hget(keys.job(job_id), "state")  # type: ignore[return-value]

    def status(self, job_id: str) -> JobStatus:
        """The job's status snapshot. Raises JobNotFound."""
        h: dict[str, str] = self.r.hgetall(keys.job(job_id))  # type: ignore[assignment]
        if not h:
            raise JobNotFound(f"no job named {job_id!r}")
        return JobStatus.from_hash(job_id, h)

    def list_jobs(self, limit: int = 50) -> list[str]:
        return list(self.r.zrevrange(keys.jobs(), 0, limit - 1))  # type: ignore[arg-type]

    def job_uri(self, job_id: str, index: int) -> str | None:
        """The URI at ``index`` of the job (None past its end): how the API ties a
        thumbnail request to a URI that belongs to the job and to nothing else."""
        if index < 0:
            return None
        return self.r.lindex(keys.job_uris(job_id), index)  # type: ignore[return-value]

    def iter_uris(self, job_id: str, batch: int = 1000) -> Iterator[str]:
        """The job's URIs in submission order, ``batch`` at a time (reprocess)."""
        for start in range(0, self.status(job_id).total, batch):
            yield from self.r.lrange(keys.job_uris(job_id), start, start + batch - 1)  # type: ignore[misc]

    def annotate_job(self, job_id: str, **fields: str) -> None:
        """Add descriptive fields to the job hash (``reprocess_of``, ``schedule``, ``model``)."""
        self.r.hset(keys.job(job_id), mapping=fields)  # type: ignore[arg-type]

    def job_field(self, job_id: str, name: str) -> str | None:
        return self.r.hget(keys.job(job_id), name)  # type: ignore[return-value]

    # -- records -----------------------------------------------------------------------
    def record_outcomes(self, job_id: str, outcomes: Iterable[tuple[int, Record, bool]]) -> None:
        """Write final records ``(index, record, deduped)`` idempotently, in one round trip."""
        args: list[Any] = [time.time()]
        for index, record, deduped in outcomes:
            args += [index, record.status, "1" if deduped else "0", json.dumps(record.to_dict())]
        if len(args) > 1:
            self._record(keys=[keys.job(job_id), keys.job_records(job_id)], args=args)

    def records(self, job_id: str, batch: int = 1000) -> Iterator[tuple[int, str, Record | None]]:
        """Yield ``(index, uri, record or None if pending)`` in submission order, streamed."""
        total = self.status(job_id).total
        for start in range(0, total, batch):
            stop = min(total, start + batch)
            pipe = self.r.pipeline()
            pipe.lrange(keys.job_uris(job_id), start, stop - 1)
            pipe.hmget(keys.job_records(job_id), [str(i) for i in range(start, stop)])
            uris, raws = pipe.execute()
            for offset, (uri, raw) in enumerate(zip(uris, raws, strict=False)):
                rec = Record.from_dict(json.loads(raw)) if raw else None
                yield start + offset, uri, rec

    # -- dedupe cache ------------------------------------------------------------------
    def cached_top3(self, model_id: str, hashes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored top-3 lists for the hashes that have one under ``model_id``."""
        if not hashes:
            return {}
        raws = self.r.mget([keys.cached_result(model_id, h) for h in hashes])
        return {h: json.loads(raw) for h, raw in zip(hashes, raws, strict=True) if raw}

    def cache_top3(self, model_id: str, results: dict[str, list[dict[str, Any]]]) -> None:
        if results:
            mapping = {keys.cached_result(model_id, h): json.dumps(t) for h, t in results.items()}
            self.r.mset(mapping)

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
