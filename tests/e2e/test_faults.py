"""Faults injected into real processes: a worker killed -9, Redis killed -9, a poison input.

Each test ends with ``audit_job``: every URI holds exactly one final record, the counters
agree with the records, and no record seen earlier has changed. The ``RELIABILITY``
lines they print (``pytest -s``) are the figures in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tasks import keys
from tasks.poison import MAX_DELIVERIES
from tests.invariants import (
    audit_job,
    cli,
    done_count,
    is_done,
    snapshot,
    wait_for,
    worker_pids,
)
from tests.servers import RedisServer, WorkerProcess, running_worker

pytestmark = pytest.mark.e2e

# Seconds: the floor. The kill test below exercises the LAST RESORT, kombu's visibility
# restore (no live worker saw the death). Heartbeat recovery with default settings is
# tests/e2e/test_dead_worker_recovery.py.
VISIBILITY = 10


def fault_env(worker_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**worker_env, "BULKTAG_METRICS_PORT": "0", **extra}


def small_photos(folder: Path, n: int) -> list[str]:
    corpus = build_corpus(folder, n, sizes=[(160, 120)], repeat_fraction=0.0)
    return [str(p) for p in corpus.all]


def test_worker_killed_mid_job_then_replaced_loses_nothing(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a 500-image job half-way through on one worker
    env = fault_env(worker_env, BULKTAG_VISIBILITY_TIMEOUT=str(VISIBILITY))
    uris = small_photos(tmp_path / "photos", 500)
    first = WorkerProcess(env, tmp_path / "worker-a.log", "--concurrency", "1").start()
    try:
        first.wait_ready(redis_client, 1)
        cli(env, "submit", str(tmp_path / "photos"), "--job", "k9", "--chunk-size", "10")
        wait_for("100 results", lambda: done_count(redis_client, "k9") >= 100, 120)
        seen = [snapshot(redis_client, "k9")]
        wait_for("a chunk in flight", lambda: redis_client.hlen(keys.job_in_flight("k9")), 30, 0.01)

        # When the whole worker (parent and pool process) is killed -9 mid-chunk
        first.kill()
        killed_at = time.monotonic()
    finally:
        first.stop()
    at_kill = done_count(redis_client, "k9")
    seen.append(snapshot(redis_client, "k9"))
    assert at_kill < 500 and redis_client.hlen(keys.broker_unacked()) >= 1

    # Then `bulktag status` calls the job stuck and names the orphaned chunk
    status = json.loads(cli(env, "status", "k9", "--json", "--stall-after", "0").stdout)
    assert status["health"]["verdict"] == "stuck", status["health"]
    assert status["health"]["orphaned"] and status["health"]["live_workers"] == []

    # When a new worker starts, the job completes
    with running_worker(env, tmp_path / "worker-b.log", redis_client, 1):
        wait_for("the job to finish", lambda: is_done(redis_client, "k9"), 180)
        recovered_in = time.monotonic() - killed_at

    # Then every URI has exactly one final record and the counts are right
    audit = audit_job(redis_client, "k9", uris, seen)
    assert (audit.ok, audit.error) == (500, 0)
    assert audit.redelivered_chunks >= 1  # the chunk the dead worker held ran again
    assert redis_client.hlen(keys.broker_unacked()) == 0
    print(audit.line("worker kill -9"), f"done_at_kill={at_kill} recovered_s={recovered_in:.1f}")


def test_redis_killed_and_restarted_mid_job_loses_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a job running against a Redis that persists every write (AOF, fsync always)
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    env = fault_env(worker_env, BULKTAG_REDIS_URL=server.url)
    uris = small_photos(tmp_path / "photos", 300)
    try:
        with running_worker(env, tmp_path / "worker.log", client, 1) as worker:
            pids_before = worker_pids(client)
            cli(env, "submit", str(tmp_path / "photos"), "--job", "rr", "--chunk-size", "10")
            wait_for("90 results", lambda: done_count(client, "rr") >= 90, 120)
            seen = [snapshot(client, "rr")]

            # When redis-server is killed -9 and comes back 2 s later on the same port
            server.restart(down_for=2.0)
            restarted = done_count(client, "rr")
            assert restarted < 300, "the job finished before the fault"

            # Then the same worker carries on and the job completes
            wait_for("the job to finish", lambda: is_done(client, "rr"), 180)
            assert worker.proc is not None and worker.proc.poll() is None
            assert worker_pids(client) == pids_before  # no process died or reloaded

        audit = audit_job(client, "rr", uris, seen)
        assert (audit.ok, audit.error) == (300, 0)
        unacked = client.hlen(keys.broker_unacked())
        print(
            audit.line("redis-server kill -9 + restart"),
            f"done_at_restart={restarted} unacked_left={unacked}",
        )
    finally:
        client.close()
        server.stop()


def test_poison_chunk_is_isolated_and_its_neighbours_tagged(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given 12 photos in two chunks, one of which kills any process that touches it
    env = fault_env(worker_env, BULKTAG_TEST_CRASH_ON="POISON")
    folder = tmp_path / "photos"
    uris = small_photos(folder, 11)
    poison = folder / "0005-POISON.jpg"
    poison.write_bytes(Path(uris[0]).read_bytes())
    uris.append(str(poison))

    with running_worker(env, tmp_path / "worker.log", redis_client, 1) as worker:
        main_pid = worker.proc.pid if worker.proc else None
        # When the job runs
        cli(env, "submit", str(folder), "--job", "px", "--chunk-size", "6")
        wait_for("the job to finish", lambda: is_done(redis_client, "px"), 240)
        # Then the worker itself survived; only pool processes died and were replaced
        assert worker.proc is not None and worker.proc.poll() is None
        assert worker.proc.pid == main_pid
        children = worker_pids(redis_client)

    audit = audit_job(redis_client, "px", uris, [])
    records = [json.loads(r) for r in snapshot(redis_client, "px").values()]
    errors = {r["uri"]: r["error"] for r in records if r["status"] == "error"}
    # ...the poison URI ended as error with the reason, its 11 neighbours were tagged
    assert errors == {
        str(poison): f"worker process died {MAX_DELIVERIES} times while processing this URI "
        "(crash, out-of-memory kill or time limit); not retried again"
    }
    assert (audit.ok, audit.error) == (11, 1)
    # ...after 3 deaths on the whole chunk and 3 on the URI alone, never more
    deaths = len(children) - 1
    assert deaths == 2 * MAX_DELIVERIES
    deliveries = redis_client.hgetall(keys.job_deliveries("px"))
    poisoned = [c for c, n in deliveries.items() if int(n) == MAX_DELIVERIES + 1]
    assert len(poisoned) == 2 and any(c.endswith("/s") for c in poisoned)
    print(audit.line("poison chunk"), f"worker_process_deaths={deaths}")
