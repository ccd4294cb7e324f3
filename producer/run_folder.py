"""The folder ``bulktag run`` keeps between runs: Redis data, worker logs, results.

``~/.cache/bulktag/run`` by default: ``redis/dump.rdb`` (the dedupe cache and every run's
job records, saved when a run ends), ``logs/JOB.worker.log`` (the newest
``KEPT_WORKER_LOGS``) and ``results/JOB.jsonl`` (a run without ``-o``). Deleting it
forgets the cache and the runs' jobs, nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

DEFAULT_RUN_DIR = Path("~/.cache/bulktag/run")
KEPT_WORKER_LOGS = 20  # the newest worker logs kept (one is written per run)


@dataclass(frozen=True)
class RunFolder:
    """Where a run keeps its Redis data, worker logs and default results file."""

    redis_dir: Path
    logs: Path
    results: Path
    persistent: bool  # False: another run holds the folder; this one's Redis is temporary


@contextlib.contextmanager
def claim_run_folder(root: Path, console: Console) -> Iterator[RunFolder]:
    """Lock ``root`` for this run; when another run holds it, use a temporary Redis dir.

    One redis-server per data folder: two servers saving one ``dump.rdb`` would each
    overwrite the other's jobs, so the lock (``flock``, released if the holder dies)
    keeps the second run off the shared data.
    """
    root.mkdir(parents=True, exist_ok=True)
    logs, results = root / "logs", root / "results"
    logs.mkdir(exist_ok=True)
    results.mkdir(exist_ok=True)
    lock = open(root / ".lock", "w")  # noqa: SIM115 - held until the run ends
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            temporary = Path(tempfile.mkdtemp(prefix="bulktag-run-redis-"))
            console.print(
                f"note: another bulktag run is using {root}; this run's Redis is temporary "
                "(no dedupe cache from earlier runs, its jobs are not kept)"
            )
            try:
                yield RunFolder(temporary, logs, results, persistent=False)
            finally:
                shutil.rmtree(temporary, ignore_errors=True)
            return
        yield RunFolder(root / "redis", logs, results, persistent=True)
    finally:
        lock.close()


def prune_logs(logs: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest worker logs (one is written per run)."""
    files = sorted(logs.glob("*.worker.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in files[keep:]:
        stale.unlink(missing_ok=True)
