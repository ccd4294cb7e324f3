"""End to end: a private redis-server, a real ``bulktag worker``, ``bulktag submit --wait``.

The worker's memory is read from /proc: the peak resident set (``VmHWM``) of every
process in its tree, summed, an upper bound on the tree's peak (shared pages count once
per process), and the proportional set size (``Pss``, shared pages split) at the end.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tasks.results_db import ResultsDB
from tasks.settings import Settings
from tasks.store import ResultStore
from tests.servers import BULKTAG, REPO, RedisServer, WorkerProcess

TopK = dict[str, tuple[list[int], list[float]]]


@dataclass
class Submission:
    """One ``bulktag submit --wait`` of the corpus."""

    images: int
    wall_seconds: float  # the command, Python start-up and progress polling (<= 0.1 s) included
    job_seconds: float  # job created in Redis -> last record stored
    ok: int
    deduped: int
    model: str = ""
    top3: TopK = field(default_factory=dict)
    worker_cpu_seconds: float = 0.0  # user+system time the worker's processes spent

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.worker_cpu_seconds / self.images

    @property
    def per_second(self) -> float:
        return self.images / self.wall_seconds

    @property
    def job_per_second(self) -> float:
        return self.images / self.job_seconds if self.job_seconds > 0 else 0.0


@dataclass
class WorkerRun:
    """A worker's start-up, memory and the two submissions it served."""

    args: list[str]
    ready_seconds: float
    first: Submission
    again: Submission
    peak_rss_mb: float
    pss_mb: float
    processes: int


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/*/children)."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return seen


def _proc_kb(path: str, field_name: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid``'s tree (live processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / ticks


def tree_memory_mb(pid: int) -> tuple[float, float, int]:
    """(sum of peak RSS, sum of PSS now, process count) for ``pid``'s tree, in MB."""
    pids = process_tree(pid)
    hwm = sum(_proc_kb(f"/proc/{p}/status", "VmHWM") for p in pids)
    pss = sum(_proc_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return hwm / 1024, pss / 1024, len(pids)


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A redis-server on a free loopback port for this run only; yields its URL."""
    server = RedisServer(workdir).start()
    try:
        yield server.url
    finally:
        server.stop()


def worker_env(redis_url: str, weights: Path, corpus: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    env.update(
        BULKTAG_REDIS_URL=redis_url,
        BULKTAG_WEIGHTS=str(weights),
        BULKTAG_ALLOWED_ROOTS=str(corpus),
        BULKTAG_METRICS_PORT="0",  # no port clash with a worker someone else runs
        # The run's own results database, never the user's (BULKTAG_RESULTS_URL wins).
        BULKTAG_RESULTS_URL=os.environ.get("BULKTAG_RESULTS_URL")
        or f"sqlite:///{corpus.parent.resolve() / 'bench-results.db'}",
        PYTHONUNBUFFERED="1",
    )
    return env


def submit_and_wait(
    env: dict[str, str], corpus: Path, job: str, images: int, chunk_size: int | None = None
) -> Submission:
    """Run ``bulktag submit CORPUS --wait`` and read the job back from Redis."""
    chunk = ["--chunk-size", str(chunk_size)] if chunk_size else []
    started = time.perf_counter()
    proc = subprocess.run(
        [*BULKTAG, "submit", str(corpus), "--job", job, "--wait", *chunk],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bulktag submit failed: {proc.stderr[-2000:]}")
    store = ResultStore(
        redis.Redis.from_url(env["BULKTAG_REDIS_URL"], decode_responses=True),
        db=ResultsDB.open(env["BULKTAG_RESULTS_URL"]),
    )
    status = store.status(job)
    if status.total != images or status.ok != images:
        raise RuntimeError(f"job {job}: {status.ok} ok of {status.total}, expected {images}")
    top3: TopK = {}
    model = ""
    for _, uri, record in store.records(job):
        if record is not None and record.top3:
            top3[uri] = ([t.index for t in record.top3], [t.score for t in record.top3])
            model = record.model or model
    job_seconds = (status.finished_at or time.time()) - status.created_at
    return Submission(images, wall, job_seconds, status.ok, status.deduped, model, top3)


def run_worker(
    env: dict[str, str],
    corpus: Path,
    images: int,
    args: list[str],
    log: Path,
    tag: str,
    chunk_size: int | None = None,
) -> WorkerRun:
    """Start a worker with ``args``, submit the corpus twice, measure, stop the worker."""
    client = redis.Redis.from_url(env["BULKTAG_REDIS_URL"], decode_responses=True)
    client.flushall()  # a clean cache: the first submission must compute everything
    settings = Settings.from_env(
        {**env, **_flag_env(args)}
    )  # what `auto` resolves to, for the process count the readiness check waits for
    worker = WorkerProcess(env, log, *args).start()
    try:
        ready = worker.wait_ready(client, settings.effective_concurrency, timeout=120)
        assert worker.proc is not None
        cpu = tree_cpu_seconds(worker.proc.pid)
        first = submit_and_wait(env, corpus, f"{tag}-first", images, chunk_size)
        first.worker_cpu_seconds = tree_cpu_seconds(worker.proc.pid) - cpu
        cpu = tree_cpu_seconds(worker.proc.pid)
        again = submit_and_wait(env, corpus, f"{tag}-again", images, chunk_size)
        again.worker_cpu_seconds = tree_cpu_seconds(worker.proc.pid) - cpu
        peak, pss, count = tree_memory_mb(worker.proc.pid)
    finally:
        worker.stop()
    return WorkerRun(args, ready, first, again, peak, pss, count)


def _flag_env(args: list[str]) -> dict[str, str]:
    """The BULKTAG_* equivalents of the worker flags the bench passes."""
    names = {"--concurrency": "BULKTAG_CONCURRENCY", "--threads": "BULKTAG_THREADS"}
    out = {}
    for flag, value in itertools.pairwise(args):
        if flag in names and value != "auto":
            out[names[flag]] = value
    return out
