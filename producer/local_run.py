"""``bulktag run``: tag a folder on this machine with one command, then exit.

It starts what the distributed set-up keeps running: a private redis-server (unless
``--redis-url`` names one) and a local ``bulktag worker``; submits the sources with the
live progress bar, waits, writes the results, and stops everything it started, on
success, on error, on Ctrl-C and on SIGTERM alike (``producer.local_services``).

What persists: the private server keeps its data in ``~/.cache/bulktag/run/redis`` and
saves it on the way out, so the dedupe cache and every run's job records survive between
runs. A second run of the same folder forwards nothing, and its cached images are
answered here while the worker is still starting (``producer.cache_answers``). Results
are also written to a file: ``-o FILE``, else ``~/.cache/bulktag/run/results/JOB.jsonl``.
Two runs at once: the second finds the folder locked and uses a temporary Redis (no
cache) instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import redis
from rich.console import Console

from producer.cache_answers import answer_from_cache, answerable
from producer.export import check_format, export_records
from producer.local_services import LocalWorker, PrivateRedis
from producer.run_folder import (
    DEFAULT_RUN_DIR,
    KEPT_WORKER_LOGS,
    RunFolder,
    claim_run_folder,
    prune_logs,
)
from producer.run_table import common_root, show_table
from producer.sources import local_roots
from tasks.errors import BulktagError, ConfigError
from tasks.records import JobStatus
from tasks.settings import Settings
from weights.checkpoint import model_id_for, verify_file

TABLE_ROWS = 10  # rows of the summary table when the results go to the default file
EXIT_ERROR = 1


def output_format(fmt: str | None, output: str | None) -> str:
    """``--format``, else the ``-o`` file's suffix (``.csv``, ``.parquet``), else jsonl."""
    if fmt:
        return fmt
    suffix = Path(output).suffix.lower() if output and output != "-" else ""
    return {".csv": "csv", ".parquet": "parquet"}.get(suffix, "jsonl")


def check_sidecars() -> Callable[..., Any]:
    """The XMP sidecar writer, checked before the run starts.

    Raises:
        ConfigError: this build has no sidecar writer yet.
    """
    try:
        module = importlib.import_module("producer.sidecars")
    except ImportError:
        module = None
    writer = getattr(module, "write_sidecars", None)
    if writer is None:
        raise ConfigError("--sidecars is not available yet in this version of bulktag")
    return writer  # type: ignore[no-any-return]


def worker_args(args: argparse.Namespace, queue: str, hostname: str) -> list[str]:
    """``bulktag worker`` flags for the run's options (unset ones keep the worker's default)."""
    flags = [
        ("--concurrency", args.concurrency),
        ("--threads", args.threads),
        ("--batch-size", args.batch_size),
        ("--precision", args.precision),
        ("--decode", args.decode),
        ("--device", args.device),
        ("--weights", args.weights),
    ]
    out = [f"{flag}={value}" for flag, value in flags if value is not None]
    # No Prometheus port: a run is short-lived and 9808 may belong to a real worker.
    return [*out, "--metrics-port=0", f"--queue={queue}", f"--hostname={hostname}"]


def run_queue(queue: str, job_id: str, *, shared: bool) -> str:
    """The queue the run's chunks go to: its own on a shared Redis (``--redis-url``), so
    the workers already serving that Redis leave them alone and the run's own worker
    takes nothing else; the configured one on the private server."""
    return f"{queue}.run.{job_id}" if shared else queue


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while stopping: a second Ctrl-C must not leave orphans."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so the stop path runs


def run_command(args: argparse.Namespace) -> int:
    """``bulktag run``: start Redis and a worker, tag, write results, stop all of it.

    Ctrl-C raises KeyboardInterrupt (``bulktag`` exits 130) and SIGTERM SystemExit(143)
    wherever the run is; either way the job is cancelled if unfinished and the stack of
    started services unwinds: worker, then Redis (saving its data), then the lock.
    """
    # Notes and progress on stderr, unwrapped (scripts parse them); no markup in them.
    console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    fmt = output_format(args.format, args.output)
    check_format(fmt)  # before any work: a missing format fails now, not after the job
    sidecars = check_sidecars() if args.sidecars else None
    settings = Settings.from_env()
    # A missing or tampered checkpoint is one line now, before Redis and a worker start.
    digest = verify_file(args.weights or settings.weights, settings.weights_sha256)
    external = args.run_redis_url or getattr(args, "redis_url", None)
    run = LocalRun(args, settings, console, external)
    if answerable(args.decode or settings.decode, args.precision or settings.precision):
        run.model_id = model_id_for(digest)  # photos tagged before are answered at once
    old_term = signal.signal(signal.SIGTERM, _terminate)
    stack = contextlib.ExitStack()
    try:
        folder = stack.enter_context(claim_run_folder(DEFAULT_RUN_DIR.expanduser(), console))
        return run.execute(stack, folder, fmt, sidecars)
    except BaseException:
        with signals_ignored():
            run.abandon()
        raise
    finally:
        with signals_ignored():
            stack.close()
        signal.signal(signal.SIGTERM, old_term)


class LocalRun:
    """One ``bulktag run``: its services, its job, and what it reports."""

    def __init__(
        self, args: argparse.Namespace, settings: Settings, console: Console, external: str | None
    ) -> None:
        from producer.submit import new_job_id

        self.args = args
        self.settings = settings
        self.console = console
        self.external = external
        self.model_id: str | None = None  # set: answer cached images here (cache_answers)
        self.job_id: str = args.job or new_job_id()
        self.started = time.monotonic()
        self.first_result: float | None = None
        self.url = ""  # the Redis this run uses, once it answers

    def execute(
        self,
        stack: contextlib.ExitStack,
        folder: RunFolder,
        fmt: str,
        sidecars: Callable[..., Any] | None,
    ) -> int:
        from producer.job import Job
        from producer.progress import EnumerationView, ProgressView
        from producer.submit import submit
        from tasks.store import connect

        url = self._redis(stack, folder)
        queue = run_queue(self.settings.queue, self.job_id, shared=bool(self.external))
        settings = self.settings.with_overrides(redis_url=url, queue=queue)
        connect(url).close()
        worker = self._worker(stack, folder, settings)
        with EnumerationView(self.console) as view:

            def on_chunk(total: int) -> None:
                view.on_chunk(total)
                worker.check()

            job = submit(
                self.args.sources,
                job=self.job_id,
                chunk_size=self.args.chunk_size,
                settings=settings,
                on_chunk=on_chunk,
            )
        stop = threading.Event()
        stack.callback(stop.set)
        if self.model_id is not None:
            roots = (*settings.allowed_roots, *local_roots(self.args.sources))
            threading.Thread(
                target=self._answer_from_cache,
                args=(job.id, settings.with_overrides(allowed_roots=roots), stop),
                name="cache-answers",
                daemon=True,
            ).start()
        progress = ProgressView(self.console)
        with progress as show:

            def on_progress(status: JobStatus) -> None:
                if self.first_result is None and status.done_count:
                    self.first_result = time.monotonic() - self.started
                    self.console.print(f"first result after {self.first_result:.1f} s")
                show(status)
                worker.check()

            status = job.wait(on_progress=on_progress)
        if status.state != "done":
            self.console.print(f"bulktag: error: job {job.id} ended {status.state}")
            return EXIT_ERROR
        self._write_results(Job(job.id, job.store), fmt, folder, settings)
        if sidecars is not None:
            sidecars(Job(job.id, job.store).results())
        elapsed = time.monotonic() - self.started
        first = f"{self.first_result:.1f}" if self.first_result is not None else "-"
        self.console.print(
            f"bulktag run: {status.total} images in {elapsed:.1f} s "
            f"(first result after {first} s; ok {status.ok}, error {status.error}, "
            f"deduped {status.deduped})"
        )
        return 0

    def _answer_from_cache(self, job_id: str, settings: Settings, stop: threading.Event) -> None:
        """The cache pass, in a thread beside the progress loop (worker start overlaps it)."""
        from tasks.store import open_store

        assert self.model_id is not None
        # Anything this pass does not answer, or fails on, the worker answers instead.
        with contextlib.suppress(Exception):
            store = open_store(settings)
            answer_from_cache(store, job_id, self.model_id, settings, stop)

    def _redis(self, stack: contextlib.ExitStack, folder: RunFolder) -> str:
        if self.external:
            self.url = self.external
            return self.external
        server = PrivateRedis(folder.redis_dir)
        stack.callback(server.stop, save=folder.persistent)
        url = server.start()
        self.url = url
        port = url.rsplit(":", 1)[1].split("/")[0]
        self.console.print(
            f"redis: private redis-server on 127.0.0.1:{port}, data in {folder.redis_dir}"
        )
        return url

    def _worker(
        self, stack: contextlib.ExitStack, folder: RunFolder, settings: Settings
    ) -> LocalWorker:
        roots = [*settings.allowed_roots, *local_roots(self.args.sources)]
        env = {
            **os.environ,
            "BULKTAG_REDIS_URL": settings.redis_url,
            "BULKTAG_RESULTS_URL": settings.results_url,
            "BULKTAG_ALLOWED_ROOTS": os.pathsep.join(str(r) for r in roots),
            "PYTHONUNBUFFERED": "1",
        }
        hostname = f"run-{self.job_id}@{socket.gethostname()}"
        log = folder.logs / f"{self.job_id}.worker.log"
        prune_logs(folder.logs, KEPT_WORKER_LOGS - 1)
        worker = LocalWorker(worker_args(self.args, settings.queue, hostname), env, log)
        stack.callback(worker.stop)
        return worker.start()

    def _write_results(self, job: Any, fmt: str, folder: RunFolder, settings: Settings) -> None:
        output = self.args.output
        if output:
            n = export_records(job.results(), fmt, output, settings)
            self.console.print(f"wrote {n} records to {output}")
            return
        path = folder.results / f"{job.id}.{fmt}"
        n = export_records(job.results(), fmt, str(path), settings)
        # The table is the command's output (stdout); progress and notes go to stderr.
        show_table(
            list(islice(job.results(), TABLE_ROWS)),
            Console(),
            common_root(self.args.sources),
        )
        more = f"the first {TABLE_ROWS} of {n}" if n > TABLE_ROWS else f"all {n}"
        self.console.print(f"{more} records above; all of them in {path}")

    def abandon(self) -> None:
        """After an interrupt or error: cancel the job if it is unfinished, and say so.

        Its records so far stay in the store; running the same command again tags only
        what is missing (the rest comes from the dedupe cache).
        """
        from producer.progress import summary_line
        from tasks.store import ResultStore, connect

        if not self.url:
            return
        with contextlib.suppress(BulktagError, redis.RedisError):
            store = ResultStore(connect(self.url))
            prior = store.cancel_job(self.job_id)  # JobNotFound: nothing was submitted
            if prior not in ("done", "cancelled"):
                self.console.print(f"cancelled: {summary_line(store.status(self.job_id))}")
