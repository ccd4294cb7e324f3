"""What "nothing lost, nothing doubled" means, checked straight in the results database.

Results are read from the database in ``BULKTAG_RESULTS_URL`` (the test's own, see
tests/conftest.py); the chunk ledger (deliveries, chunks in flight) from Redis.

A job passes when every URI holds exactly one final record, the counters agree with
the records, and no record seen at any earlier moment has changed since (a URI with
two different final records would show up as a change).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis

from tasks import keys
from tasks.errors import JobNotFound
from tasks.results_db import ResultsDB
from tests.servers import BULKTAG, REPO

T = TypeVar("T")


def cli(
    env: dict[str, str], *args: str, timeout: float = 180, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``bulktag ARGS`` as a subprocess; with ``check``, exit 0 is asserted."""
    proc = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, poll: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; Redis being down counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except redis.ConnectionError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(poll)


def results() -> ResultsDB:
    """The test's results database (``BULKTAG_RESULTS_URL``, as its workers use)."""
    return ResultsDB.open(os.environ["BULKTAG_RESULTS_URL"])


def job_fields(client: redis.Redis, job: str) -> dict[str, str]:
    """The job's status as strings (empty while there is no such job)."""
    try:
        status = results().status(job).to_dict()
    except JobNotFound:
        return {}
    return {k: str(v) for k, v in status.items() if v is not None}


def done_count(client: redis.Redis, job: str) -> int:
    h = job_fields(client, job)
    return int(h.get("ok", 0)) + int(h.get("error", 0))


def is_done(client: redis.Redis, job: str) -> bool:
    return results().job_state(job) == "done"


def snapshot(client: redis.Redis, job: str) -> dict[str, str]:
    """Every record written so far: index -> JSON (the v1 record shape)."""
    if results().job_state(job) is None:
        return {}
    return {
        str(i): json.dumps(rec.to_dict()) for i, _, rec in results().records(job) if rec is not None
    }


def worker_pids(client: redis.Redis) -> set[int]:
    """Pids of every pool process that ever registered (one per model load)."""
    return {int(k.rsplit(":", 1)[1]) for k in client.smembers(keys.workers())}


def peak_rss_mib(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


@dataclass(frozen=True)
class Audit:
    """Figures for docs/RELIABILITY.md: what a job ended with after its faults."""

    uris: int
    ok: int
    error: int
    lost: int  # URIs with no final record
    changed: int  # records that differ from an earlier sighting (two final records)
    redelivered_chunks: int  # chunks started more than once

    def line(self, fault: str) -> str:
        return f"RELIABILITY {fault}: {json.dumps(self.__dict__)}"


def audit_job(
    client: redis.Redis, job: str, submitted: list[str], earlier: list[dict[str, str]]
) -> Audit:
    """Check the job's final state against what was submitted and seen earlier.

    Asserts every invariant; returns the figures.
    """
    h = job_fields(client, job)
    final = snapshot(client, job)
    uris = list(results().iter_uris(job))
    assert sorted(uris) == sorted(submitted), "the job's URI list differs from what was submitted"
    total = int(h["total"])
    assert total == len(submitted)
    lost = [i for i in range(total) if str(i) not in final]
    records = {int(i): json.loads(raw) for i, raw in final.items()}
    assert set(records) <= set(range(total)), "a record outside the job"
    wrong = [i for i, rec in records.items() if rec["uri"] != uris[i]]
    assert not wrong, f"records under the wrong index: {wrong[:5]}"
    changed = sum(1 for seen in earlier for i, raw in seen.items() if final.get(i) != raw)
    ok = sum(1 for rec in records.values() if rec["status"] == "ok")
    error = len(records) - ok
    assert (int(h["ok"]), int(h["error"])) == (ok, error), "counters disagree with the records"
    assert h["state"] == "done" and not lost and not changed
    deliveries = client.hvals(keys.job_deliveries(job))
    redelivered = sum(1 for count in deliveries if int(count) > 1)
    # The last chunk clears its in-flight entry just after its records make the job done.
    deadline = time.monotonic() + 5
    while (left := client.hgetall(keys.job_in_flight(job))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"a finished job still has chunks in flight: {left}"
    return Audit(total, ok, error, len(lost), changed, redelivered)
