"""Finding-and-using-tags benchmark: label search and Parquet export on a private Redis.

Seeds ``--records`` ok records (``--jobs`` jobs, default 10, random top-3 over 1000
classes, written through ``ResultStore.record_outcomes`` as workers write them), then
measures:

* ``store.search`` for one class (~0.3% of records): the first page of 100, and the
  page at offset 1,000; ``store.label_counts`` over everything;
* ``bulktag results JOB --format parquet`` of the newest job as a child process:
  wall time and peak RSS (from ``wait4``), so runs at two sizes show memory is flat.

Prints the figures; it writes nothing to docs/ (the Redis store scans; the SQL results
store's figures, from its label index, belong to its own benchmark).

    python -m bench.tags [--records 100000] [--jobs 10]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tasks.records import Label, Record
from tasks.store import ResultStore
from tests.labelled_jobs import book_uris
from tests.servers import RedisServer

WRITE_BATCH = 5_000


def seed(store: ResultStore, records: int, n_jobs: int) -> list[str]:
    """``records`` ok records over ``n_jobs`` jobs; returns the job ids, oldest first."""
    rng = random.Random(0)
    per_job = records // n_jobs
    jobs = []
    for j in range(n_jobs):
        job = f"bench{j}"
        store.create_job(job, 32, "bench.tags")
        book_uris(store, job, [f"/archive/{j}/{i:08d}.jpg" for i in range(per_job)])
        store.finish_enumeration(job)
        for start in range(0, per_job, WRITE_BATCH):
            outcomes = []
            for i in range(start, min(per_job, start + WRITE_BATCH)):
                top = [
                    Label(f"class {k}", k, s)
                    for k, s in zip(rng.sample(range(1000), 3), (0.6, 0.3, 0.1), strict=True)
                ]
                rec = Record(f"/archive/{j}/{i:08d}.jpg", f"{i:064x}", "ok", None, top, "m")
                outcomes.append((i, rec, False))
            store.record_outcomes(job, outcomes)
        jobs.append(job)
    return jobs


def timed(label: str, fn: object) -> None:
    start = time.perf_counter()
    result = fn()  # type: ignore[operator]
    print(f"{label}: {1000 * (time.perf_counter() - start):.0f} ms ({len(result)} results)")


def parquet_export(url: str, job: str, out: Path) -> None:
    cmd = [sys.executable, "-m", "producer.cli", "--redis-url", url]
    start = time.perf_counter()
    proc = subprocess.Popen([*cmd, "results", job, "--format", "parquet", "-o", str(out)])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    assert os.waitstatus_to_exitcode(status) == 0
    print(
        f"parquet export of {job}: {wall:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB, "
        f"file {out.stat().st_size / 1e6:.1f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=10, help="the newest is exported")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            store = ResultStore(redis.Redis.from_url(server.url, decode_responses=True))
            start = time.perf_counter()
            jobs = seed(store, args.records, args.jobs)
            print(f"seeded {args.records} records in {time.perf_counter() - start:.1f} s")
            timed("search, first page of 100", lambda: list(store.search([281], limit=100)))
            timed(
                "search, page of 100 at offset 100",
                lambda: list(store.search([281], limit=100, offset=100)),
            )
            timed("label_counts, all records", store.label_counts)
            parquet_export(server.url, jobs[-1], Path(tmp) / "export.parquet")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
