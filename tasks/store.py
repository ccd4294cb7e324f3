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

from tasks import keys
from tasks.errors import JobNotFound, StoreUnavailable
from tasks.records import JobStatus, Record

# KEYS: job hash, records hash. ARGV: now, then (index, status, deduped, json) * n.
_RECORD_LUA = """
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
end
return 1
"""


def connect(url: str) -> redis.Redis:
    """A Redis client for ``url`` that answers with str, checked with a PING.

    Raises:
        StoreUnavailable: Redis cannot be reached or refuses us.
    """
    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"cannot reach Redis at {_safe_url(url)}: {exc}") from exc
    except redis.AuthenticationError as exc:
        raise StoreUnavailable(f"Redis at {_safe_url(url)} refused our password: {exc}") from exc
    except redis.ResponseError as exc:
        raise StoreUnavailable(f"Redis at {_safe_url(url)} answered: {exc}") from exc
    return client


def _safe_url(url: str) -> str:
    """The URL with any password masked, for error messages and logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


class ResultStore:
    """Jobs, per-URI records and the (model id, sha256) result cache."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._record = client.register_script(_RECORD_LUA)
        self._finish_enum = client.register_script(_FINISH_ENUM_LUA)

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

    def finish_enumeration(self, job_id: str) -> None:
        self._finish_enum(keys=[keys.job(job_id)], args=[time.time()])

    def delete_job(self, job_id: str) -> None:
        self.r.delete(keys.job(job_id), keys.job_uris(job_id), keys.job_records(job_id))
        self.r.zrem(keys.jobs(), job_id)

    def cancel_job(self, job_id: str) -> None:
        self.status(job_id)  # raises JobNotFound
        self.r.hset(keys.job(job_id), mapping={"state": "cancelled", "finished_at": time.time()})

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
