"""Producer benchmark: submit 1,000,000 URIs from a list file into a private redis-server.

Runs ``bulktag submit @list`` as a child process (no worker: the chunk messages stay
queued) and reports URIs/s and the child's peak RSS, taken from ``wait4``'s rusage
rather than sampled. A run at a tenth of the size shows whether memory grows with
the job (it should not), and runs with one chunk per round trip, on loopback and
through a proxy that adds 1 ms of round-trip time (Redis in another zone), show
what the pipelined publish batches buy. Figures go to the "Producer" section of
docs/BENCHMARKS.md; other sections of that file are left alone.

    python -m bench.producer [--uris 1000000] [--rtt-uris 200000] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.e2e import private_redis
from bench.latency import delayed_proxy
from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "docs" / "BENCHMARKS.md"
# The CLI with PUBLISH_BATCH_URIS overridden: one chunk per round trip, as before batching.
UNBATCHED = (
    "import importlib, sys; s = importlib.import_module('producer.submit'); "
    "s.PUBLISH_BATCH_URIS = int(sys.argv[1]); "
    "from producer.cli import main; sys.exit(main(sys.argv[2:]))"
)


@dataclass
class Run:
    label: str
    uris: int
    seconds: float
    peak_rss_mb: float
    redis_mb: float

    @property
    def rate(self) -> float:
        return self.uris / self.seconds


def write_list(path: Path, n: int) -> None:
    """``n`` S3 URIs laid out like a dated photo archive, one per line."""
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(f"s3://photo-archive/{2000 + i // 100_000}/{i // 1000 % 100:02d}/")
            out.write(f"IMG_{i:07d}.jpg\n")


def submit_once(url: str, listing: Path, n: int, label: str, batch_uris: int | None) -> Run:
    """Flush Redis, submit ``listing`` in a child process, and measure it."""
    client = redis.Redis.from_url(url)
    client.flushall()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    env["BULKTAG_REDIS_URL"] = url
    # A fresh results database per run (the job ids repeat): SQLite beside the list.
    results_url = f"sqlite:///{listing.parent / f'results-{time.monotonic_ns()}.db'}"
    env["BULKTAG_RESULTS_URL"] = results_url
    job = f"bench-{n}"
    cli = ["submit", f"@{listing}", "--job", job]
    argv = [sys.executable, "-m", "producer.cli", *cli]
    if batch_uris is not None:
        argv = [sys.executable, "-c", UNBATCHED, str(batch_uris), *cli]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"submit failed with exit status {proc.returncode}")
    from tasks.results_db import ResultsDB

    total = ResultsDB.open(results_url).status(job).total
    if total != n:
        sys.exit(f"job counted {total} URIs, expected {n}")
    redis_mb = int(client.info("memory")["used_memory"]) / 2**20
    # ru_maxrss is in KiB on Linux
    return Run(label, n, seconds, usage.ru_maxrss / 1024, redis_mb)


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}"


def round_trip_ms(url: str, n: int = 100) -> float:
    """Median PING time through ``url``, in milliseconds."""
    client = redis.Redis.from_url(url)
    client.ping()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - started)
    client.close()
    return sorted(times)[n // 2] * 1000


def report(runs: list[Run], chunk: int, rtt_ms: float) -> str:
    rows = "\n".join(
        f"| {r.label} | {r.uris:,} | {r.seconds:.1f} | {r.rate:,.0f} | {r.peak_rss_mb:.0f} "
        f"| {r.redis_mb:.0f} |"
        for r in runs
    )
    return f"""
`make bench-producer` (`python -m bench.producer`): `bulktag submit @list.txt` of S3 URIs
(~45 bytes each) into a private redis-server, chunks of {chunk}, no worker running.
Wall time includes interpreter start-up; peak RSS is the producer process's
(`wait4` rusage); Redis memory is `used_memory` afterwards (the queued chunk messages;
the job's URI list goes to the results database, a SQLite file here: `python -m
bench.results_db` compares SQLite and PostgreSQL).
Machine: {machine()}; measured {time.strftime("%Y-%m-%d")}.

| run | URIs | seconds | URIs/s | producer peak RSS (MB) | Redis memory (MB) |
|---|---:|---:|---:|---:|---:|
{rows}

- Peak RSS does not grow with the job (compare the run a tenth the size): the
  producer holds one publish batch (~1,024 URIs) at a time, whatever the job size.
- Each publish batch costs one database transaction of bookkeeping, one pipeline
  of chunk messages (kombu's `Producer.batch`) and a check that the job was not
  cancelled. "One chunk per batch" pays them per chunk. "Slow link" runs go through
  a local TCP proxy that delays every packet (`bench/latency.py`; median PING
  {rtt_ms:.1f} ms, Redis in another zone or region), where round trips dominate.
- Redis, not the producer, is what grows: ~{runs[0].redis_mb / runs[0].uris * 1e6:,.0f} MB
  per million URIs queued. `--max-queued N` bounds the message part of that.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer", description=__doc__)
    parser.add_argument("--uris", type=int, default=1_000_000)
    parser.add_argument("--rtt-uris", type=int, default=200_000, help="URIs for 1 ms RTT runs")
    parser.add_argument("--no-write", action="store_true", help="print, don't edit docs")
    args = parser.parse_args(argv)
    n = args.uris
    with tempfile.TemporaryDirectory(prefix="bulktag-bench-") as tmp:
        work = Path(tmp)
        big, small, far = work / "big.txt", work / "small.txt", work / "far.txt"
        write_list(big, n)
        write_list(small, n // 10)
        write_list(far, args.rtt_uris)
        runs: list[Run] = []
        with private_redis(work) as url:
            plan = [
                (url, big, n, "loopback, default (1,024-URI batches)", None),
                (url, small, n // 10, "loopback, default, a tenth the size", None),
                (url, big, n, "loopback, one chunk per batch", 32),
            ]
            for args_ in plan:
                runs.append(submit_once(*args_))
                print(runs[-1], file=sys.stderr)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            with delayed_proxy(port, 0.0005) as proxy_port:
                slow = f"redis://127.0.0.1:{proxy_port}/0"
                rtt_ms = round_trip_ms(slow)
                for label, batch in (("default", None), ("one chunk per batch", 32)):
                    runs.append(submit_once(slow, far, args.rtt_uris, f"slow link, {label}", batch))
                    print(runs[-1], file=sys.stderr)
    text = report(runs, 32, rtt_ms)
    print(text)
    if not args.no_write:
        write_section(BENCHMARKS, "producer", "## Producer\n" + text)
        print(f"wrote the Producer section of {BENCHMARKS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
