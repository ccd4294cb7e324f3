"""Results-database benchmark: Redis footprint of an ended job, database bytes per record,
and a label look-up over a million records, for SQLite and PostgreSQL.

For each backend a private redis-server (and PostgreSQL: initdb + pg_ctl, as the tests
start it) is started; ``N`` URIs are submitted by ``bulktag submit @list`` in a child
process (URIs/s, as ``bench.producer``); then every chunk is "tagged" the way a worker
writes it (chunk ledger begin, one ``record_outcomes`` transaction, ledger end) with
random top-3 labels over the 1,000 ImageNet classes, and the queued messages are
consumed. Redis ``used_memory`` is read before, right after the job ends (the chunk
ledger still expiring) and once the ledger's TTL has passed.

``--legacy`` runs the same write path against the store of the code on ``PYTHONPATH``
when that is the old all-in-Redis store (``PYTHONPATH=/path/to/old/checkout``): the
"before" figure.

Then ``--lookup-records`` more records are generated inside the database (SQL, random
labels) so the label look-up runs over ~1,000,000 records, with its query plan.

    python -m bench.results_db [--uris 100000] [--lookup-records 900000]
                               [--backend sqlite postgres] [--group 32]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parent.parent
CHUNK = 32
MODEL = "resnet18-f37072fd"
TABBY = 281


def categories() -> list[str]:
    """ImageNet class names (realistic label lengths), from torchvision's metadata."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def uris(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"s3://photo-archive/{2000 + i // 100_000}/{i // 1000 % 100:02d}/IMG_{i:07d}.jpg"


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def job_bytes(client: redis.Redis) -> int:
    """``MEMORY USAGE`` summed over bulktag's keys (not kombu's bindings and queue): what
    the job and its results cost Redis, free of allocator and buffer noise."""
    return sum(int(client.memory_usage(k) or 0) for k in client.scan_iter("bulktag:*"))


def fake_records(first: int, chunk: list[str], names: list[str], rng: random.Random) -> list[Any]:
    from tasks.records import Label, Record

    out = []
    for offset, uri in enumerate(chunk):
        idx = rng.sample(range(1000), 3)
        scores = sorted((rng.random() for _ in range(3)), reverse=True)
        top3 = [Label(names[i], i, s) for i, s in zip(idx, scores, strict=True)]
        digest = hashlib.sha256(uri.encode()).hexdigest()
        out.append((first + offset, Record(uri, digest, "ok", None, top3, MODEL), False))
    return out


def tag_everything(store: Any, job: str, n: int, names: list[str], group: int = 1) -> float:
    """Write every chunk's records as workers do; returns seconds.

    Each 32-URI chunk gets its ledger entries (begin/end) as on a worker; records and
    cache entries go in ``group`` chunks per transaction (1 = exactly a worker's writes;
    more only to load a million records in minutes on a busy machine: the rows, and so
    the database size and the Redis footprint, are the same).
    """
    from tasks.chunks import ChunkLedger, chunk_id

    ledger = ChunkLedger(store.r)
    rng = random.Random(0)
    started = time.perf_counter()
    pending: list[Any] = []
    listed = list(uris(n))
    for first in range(0, n, CHUNK):
        batch = listed[first : first + CHUNK]
        chunk = chunk_id(list(range(first, first + len(batch))))
        ledger.begin(job, chunk, host="bench", pid=1, uris=len(batch))
        pending += fake_records(first, batch, names, rng)
        if len(pending) >= group * CHUNK or first + CHUNK >= n:
            cache = {r.sha256: [t.__dict__ for t in r.top3] for _, r, _ in pending}
            store.cache_top3(MODEL, cache)
            store.record_outcomes(job, pending)
            pending = []
        ledger.end(job, chunk)
    return time.perf_counter() - started


def legacy(url: str, n: int) -> None:
    """The old all-in-Redis store (on PYTHONPATH): bytes per image after a job ends."""
    from tasks.store import ResultStore, connect

    store = ResultStore(connect(url))
    client = redis.Redis.from_url(url)
    client.flushall()
    base = used_memory(client)
    store.create_job("legacy", CHUNK, "bench")
    pipe = store.r.pipeline()
    listed = list(uris(n))
    for i in range(0, n, CHUNK):
        store.add_chunk(pipe, "legacy", listed[i : i + CHUNK])
    pipe.execute()
    store.finish_enumeration("legacy")
    seconds = tag_everything(store, "legacy", n, categories())
    after = used_memory(client)
    print(
        f"legacy store: {n} URIs, {(after - base) / n:.0f} bytes/URI of used_memory and "
        f"{job_bytes(client) / n:.0f} bytes/URI in bulktag keys after the job ended "
        f"({seconds:.0f} s to write)"
    )


def submit_child(redis_url: str, results_url: str, listing: Path, job: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    env.update(BULKTAG_REDIS_URL=redis_url, BULKTAG_RESULTS_URL=results_url)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "producer.cli", "submit", f"@{listing}", "--job", job],
        cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def db_bytes(store: Any, results_url: str) -> int:
    engine = store.db.engine
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(results_url[len("sqlite:///") :])
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())


def plan(store: Any) -> str:
    engine = store.db.engine
    sql = (
        "SELECT * FROM records WHERE (index1 IN (281) AND score1 >= 0.3) OR "
        "(index2 IN (281) AND score2 >= 0.3) OR (index3 IN (281) AND score3 >= 0.3) "
        "ORDER BY written_at DESC, idx DESC, job_id LIMIT 100"
    )
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
            return "\n".join(str(r[-1]) for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + sql)
        return "\n".join(str(r[0]) for r in rows)


# A million records made inside the database (C speed), for the look-up timing only:
# random top-3 class indices and scores, as random weights give; the rows carry every
# column and index the real ones do.
FILL_SQLITE = """
WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < :count - 1)
INSERT INTO records (job_id, idx, uri, sha256, status, error, model, deduped, written_at,
                     label1, index1, score1, label2, index2, score2, label3, index3, score3)
SELECT 'lookup', x, 's3://photo-archive/' || x || '.jpg', lower(hex(randomblob(32))), 'ok',
       NULL, :model, 0, :now + x * 1e-6,
       'class', abs(random()) % 1000, (abs(random()) % 1000000) / 1e6,
       'class', abs(random()) % 1000, (abs(random()) % 1000000) / 2e6,
       'class', abs(random()) % 1000, (abs(random()) % 1000000) / 4e6
FROM n
"""
FILL_POSTGRES = """
INSERT INTO records (job_id, idx, uri, sha256, status, error, model, deduped, written_at,
                     label1, index1, score1, label2, index2, score2, label3, index3, score3)
SELECT 'lookup', x, 's3://photo-archive/' || x || '.jpg', md5(x::text) || md5((x + 1)::text),
       'ok', NULL, :model, false, :now + x * 1e-6,
       'class', floor(random() * 1000), random(), 'class', floor(random() * 1000),
       random() / 2, 'class', floor(random() * 1000), random() / 4
FROM generate_series(0, :count - 1) AS x
"""


def fill_lookup(store: Any, count: int) -> float:
    """Add ``count`` records of a job "lookup" inside the database; returns seconds."""
    import sqlalchemy as sa

    engine = store.db.engine
    store.create_job("lookup", CHUNK, "bench")
    sql = FILL_SQLITE if engine.dialect.name == "sqlite" else FILL_POSTGRES
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(sql), {"count": count, "model": MODEL, "now": time.time()})
        if engine.dialect.name != "sqlite":
            conn.exec_driver_sql("ANALYZE records")
        else:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def timed(fn: Any, repeat: int = 7) -> float:
    """Median milliseconds of ``fn()`` (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run_backend(backend: str, n: int, work: Path, group: int, lookup: int) -> dict[str, Any]:
    from bench.producer import private_redis, write_list
    from tasks.results_db.engine import forget_engines
    from tasks.store import ResultStore

    listing = work / "list.txt"
    if not listing.exists():
        write_list(listing, n)
    server = None
    if backend == "postgres":
        from tests.postgres import PostgresServer

        server = PostgresServer().start()
        results_url = server.create_database("bench")
    else:
        results_url = f"sqlite:///{work / 'results.db'}"
    try:
        with private_redis(work) as redis_url:
            client = redis.Redis.from_url(redis_url)
            base = used_memory(client)
            submit_s = submit_child(redis_url, results_url, listing, "big")
            os.environ["BULKTAG_RESULTS_URL"] = results_url
            from tasks.results_db import ResultsDB

            store = ResultStore(
                redis.Redis.from_url(redis_url, decode_responses=True), ResultsDB.open(results_url)
            )
            queued = used_memory(client) - base
            write_s = tag_everything(store, "big", n, categories(), group)
            client.delete("bulktag")  # the workers consumed the queued chunk messages
            status = store.status("big")
            assert status.state == "done" and status.ok == n, status
            ended = job_bytes(client)
            left = {k.decode(): int(client.memory_usage(k) or 0) for k in client.scan_iter()}
            print(f"keys left after the job ended: {left}", file=sys.stderr)
            for key in client.scan_iter("bulktag:job:big:*"):
                assert 0 < client.ttl(key) <= 600
                client.delete(key)  # what the TTL does 10 minutes later
            expired = job_bytes(client)
            size = db_bytes(store, results_url)
            fill_s = fill_lookup(store, lookup)
            search_ms = timed(lambda: list(store.search([TABBY], min_score=0.3, limit=100)))
            all_ms = timed(lambda: list(store.search([TABBY], min_score=0.3)))
            matches = len(list(store.search([TABBY], min_score=0.3)))
            counts_ms = timed(lambda: store.label_counts(), repeat=3)
            figures = {
                "backend": backend,
                "uris": n,
                "submit_s": submit_s,
                "submit_rate": n / submit_s,
                "redis_queued_bytes": queued,
                "write_s": write_s,
                "redis_ended_bytes": ended,
                "redis_expired_bytes": expired,
                "db_bytes_per_record": size / n,
                "search_ms": search_ms,
                "search_all_ms": all_ms,
                "matches": matches,
                "counts_ms": counts_ms,
                "lookup_records": lookup + n,
                "fill_s": fill_s,
                "plan": plan(store),
            }
            print(figures, file=sys.stderr)
            forget_engines()
            return figures
    finally:
        if server is not None:
            server.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.results_db", description=__doc__)
    parser.add_argument("--uris", type=int, default=100_000, help="URIs submitted and tagged")
    parser.add_argument(
        "--lookup-records", type=int, default=900_000, help="records added for the look-up"
    )
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--legacy", action="store_true", help="measure the old store on PYTHONPATH")
    parser.add_argument("--group", type=int, default=32, help="chunks per records transaction")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bulktag-bench-") as tmp:
        if args.legacy:
            from bench.producer import private_redis

            with private_redis(Path(tmp)) as url:
                legacy(url, args.uris)
            return 0
        for backend in args.backend:
            run_backend(backend, args.uris, Path(tmp), args.group, args.lookup_records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
