"""`submit --wait` through a Redis outage, an empty Redis restart and a queue nobody
reads (issue 16, finding 7): real redis-server, real `bulktag submit`, real worker.

Before: a 3-second outage ended the wait with a Redis traceback line, an empty restart
left "no job named ...", and with no worker the wait was silent until its timeout. Jobs
now live in the results database, so an empty restart loses only the queued messages:
the job survives and `retry --pending` finishes it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tests.servers import BULKTAG, REPO, RedisServer, WorkerProcess

pytestmark = pytest.mark.e2e


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> float:
    """Poll ``check`` until true; seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def job_state(results_url: str, job: str) -> str | None:
    """The job's state, read from the results database as any SQL client would."""
    try:
        with sqlite3.connect(results_url.removeprefix("sqlite:///")) as db:
            row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (job,)).fetchone()
    except sqlite3.OperationalError:  # the producer has not created the schema yet
        return None
    return str(row[0]) if row else None


def submit_waiting(env: dict[str, str], folder: Path, job: str, err: Path) -> subprocess.Popen[str]:
    """`bulktag submit FOLDER --wait` in the background, its stderr going to ``err``."""
    with open(err, "w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*BULKTAG, "submit", str(folder), "--job", job, "--wait", "--timeout", "300"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
        )


def test_wait_reports_no_consumer_and_rides_out_a_redis_restart(
    worker_env: dict[str, str], tmp_path: Path, results_url: str
) -> None:
    # Given a Redis that persists every write, 8 photos, and no worker yet
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    env = {**worker_env, "BULKTAG_REDIS_URL": server.url}
    build_corpus(tmp_path / "photos", 8, sizes=[(320, 240)])
    err = tmp_path / "submit.err"
    worker = WorkerProcess(env, tmp_path / "worker.log", "--concurrency", "1")
    try:
        # When the job is submitted and waited for
        proc = submit_waiting(env, tmp_path / "photos", "outage", err)
        wait_for(lambda: job_state(results_url, "outage") == "running", "the job")
        # Then within a few seconds the wait says nobody consumes the queue
        took = wait_for(lambda: "no worker is consuming queue" in err.read_text(), "the note")
        assert took < 15, took
        print(f"\nno-consumer note {took:.1f}s after the job started running")
        assert proc.poll() is None  # and keeps waiting

        # When Redis goes away for 3 s and comes back, then a worker starts (progress is
        # read from the results database, so the wait itself does not depend on Redis)
        server.restart(down_for=3)
        assert proc.poll() is None
        worker.start()
        out, _ = proc.communicate(timeout=240)
    finally:
        worker.stop()
        server.stop()

    # Then the same wait ends normally with every URI done
    lines = err.read_text().splitlines()
    assert proc.returncode == 0, lines
    assert "outage [done] 8/8 done  ok 8" in out
    notes = [line for line in lines if line.startswith("bulktag: ")]
    assert notes[0].startswith(
        "bulktag: no worker is consuming queue bulktag (start `bulktag worker`"
    ), notes
    # (a worker consuming again is noted only while the job is still running; a job
    # that finishes in one step ends with its summary instead: tests/unit/test_outage.py)


def test_an_empty_redis_restart_loses_only_queued_work(
    worker_env: dict[str, str], tmp_path: Path, results_url: str
) -> None:
    # Given a Redis that persists nothing and a job whose chunks wait with no worker
    server = RedisServer(tmp_path / "redis").start()
    env = {**worker_env, "BULKTAG_REDIS_URL": server.url}
    build_corpus(tmp_path / "photos", 3, sizes=[(320, 240)], repeat_fraction=0.0)
    worker = WorkerProcess(env, tmp_path / "worker.log", "--concurrency", "1")
    try:
        cli = [*BULKTAG, "submit", str(tmp_path / "photos"), "--job", "gone"]
        subprocess.run(cli, cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
        assert job_state(results_url, "gone") == "running"
        # When Redis is killed and restarted empty (the queued chunks are lost with it)
        server.restart(down_for=1)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.dbsize() == 0
        # Then the job is still there, its URIs pending, and says so
        status = subprocess.run(
            [*BULKTAG, "status", "gone"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert status.returncode == 0, status.stderr
        assert "pending   3" in status.stdout
        # And `retry --pending` with a worker finishes it
        worker.start()
        worker.wait_ready(client, 1)
        retry = subprocess.run(
            [*BULKTAG, "retry", "gone", "--pending", "--wait"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert retry.returncode == 0, retry.stderr
        assert "3 pending URIs re-enqueued" in retry.stdout
        assert job_state(results_url, "gone") == "done"
    finally:
        worker.stop()
        server.stop()
