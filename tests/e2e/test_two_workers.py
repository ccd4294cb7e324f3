"""Scaling out: two `bulktag worker`s (two machines, in effect) share one Redis and one job."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tests.servers import BULKTAG, REPO, WorkerProcess

pytestmark = pytest.mark.e2e


def bulktag(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def chunks_by_host(client: redis.Redis) -> dict[str, int]:
    """Chunks done per Celery hostname, from the per-process counters workers keep."""
    totals: dict[str, int] = {}
    for key in client.smembers("bulktag:workers"):
        host = key.split(":")[2]  # bulktag:worker:{hostname}:{pid}
        totals[host] = totals.get(host, 0) + int(client.hget(key, "chunks") or 0)
    return totals


def test_one_jobs_chunks_spread_across_two_workers(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given two workers with their own node names against the same Redis
    build_corpus(tmp_path / "photos", 40, sizes=[(320, 240)], repeat_fraction=0.0)
    workers = [
        WorkerProcess(
            worker_env,
            tmp_path / f"{name}.log",
            "--concurrency",
            "1",
            "--hostname",
            f"{name}@bulktag-test",
        ).start()
        for name in ("alpha", "beta")
    ]
    try:
        workers[1].wait_ready(redis_client, processes=2, timeout=90)

        # When a 40-image job is submitted in chunks of 2 (20 messages)
        bulktag(
            worker_env,
            "submit",
            str(tmp_path / "photos"),
            "--job",
            "wide",
            "--chunk-size",
            "2",
            "--wait",
            "--timeout",
            "120",
        )
        status = json.loads(bulktag(worker_env, "status", "wide", "--json"))
    finally:
        for worker in workers:
            worker.stop()

    # Then every URI is done, and both hosts took a share of the chunks
    assert status["state"] == "done" and status["ok"] == 40
    spread = chunks_by_host(redis_client)
    print(f"chunks per host: {spread}")
    assert set(spread) == {"alpha@bulktag-test", "beta@bulktag-test"}, spread
    assert sum(spread.values()) == 20
    assert min(spread.values()) >= 3, spread  # not all piled on the first worker up
