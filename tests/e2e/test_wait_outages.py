"""`submit --wait` through a Redis outage, an empty Redis restart and a queue nobody
reads (issue 16, finding 7): real redis-server, real `bulktag submit`, real worker.

Before: a 3-second outage ended the wait with a Redis traceback line, an empty restart
left "no job named ...", and with no worker the wait was silent until its timeout.
"""

from __future__ import annotations

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
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a Redis that persists every write, 8 photos, and no worker yet
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    env = {**worker_env, "BULKTAG_REDIS_URL": server.url}
    client = redis.Redis.from_url(server.url, decode_responses=True)
    build_corpus(tmp_path / "photos", 8, sizes=[(320, 240)])
    err = tmp_path / "submit.err"
    worker = WorkerProcess(env, tmp_path / "worker.log", "--concurrency", "1")
    try:
        # When the job is submitted and waited for
        proc = submit_waiting(env, tmp_path / "photos", "outage", err)
        wait_for(lambda: client.hget("bulktag:job:outage", "state") == "running", "the job")
        # Then within a few seconds the wait says nobody consumes the queue
        took = wait_for(lambda: "no worker is consuming queue" in err.read_text(), "the note")
        assert took < 15, took
        print(f"\nno-consumer note {took:.1f}s after the job started running")
        assert proc.poll() is None  # and keeps waiting

        # When Redis goes away for 3 s and comes back, then a worker starts
        server.restart(down_for=3)
        back = wait_for(lambda: "Redis is back" in err.read_text(), "the recovery note")
        print(f"wait noticed Redis back {back:.1f}s after the restart")
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
    assert any(
        n.startswith("bulktag: Redis unreachable while waiting for job outage") for n in notes
    )
    assert any(n.startswith("bulktag: Redis is back after") for n in notes)
    # (a worker consuming again is noted only while the job is still running; a job
    # that finishes in one step ends with its summary instead: tests/unit/test_outage.py)


def test_a_job_lost_in_an_empty_restart_says_so(worker_env: dict[str, str], tmp_path: Path) -> None:
    # Given a Redis that persists nothing and a job waited on with no worker
    server = RedisServer(tmp_path / "redis").start()
    env = {**worker_env, "BULKTAG_REDIS_URL": server.url}
    client = redis.Redis.from_url(server.url, decode_responses=True)
    build_corpus(tmp_path / "photos", 3, sizes=[(320, 240)])
    err = tmp_path / "submit.err"
    try:
        proc = submit_waiting(env, tmp_path / "photos", "gone", err)
        wait_for(lambda: client.hget("bulktag:job:gone", "state") == "running", "the job")
        # When Redis is killed and restarted empty
        server.restart(down_for=1)
        proc.communicate(timeout=60)
        # Then the wait ends with one line that says the state was lost, not "no job named"
        assert proc.returncode == 1
        last = err.read_text().strip().splitlines()[-1]
        assert last.startswith(
            "bulktag: error: job gone: its state is gone from Redis (was the server restarted "
            "without persistence"
        ), last
        # And `status` on that Redis says why it cannot find the job
        status = subprocess.run(
            [*BULKTAG, "status", "gone"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert status.returncode == 1
        assert len(status.stderr.strip().splitlines()) == 1, status.stderr
        assert status.stderr.startswith("bulktag: error: no job named 'gone': ")
        assert "this Redis holds no jobs at all and persists nothing" in status.stderr
        assert "if it was restarted, every job's state is gone" in status.stderr
    finally:
        server.stop()
