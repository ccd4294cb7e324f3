"""A worker's Prometheus endpoint adds up its prefork processes; its logs name job and chunk."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from producer.samples import build_corpus
from tasks import keys
from tasks.store import ResultStore
from tests.servers import BULKTAG, REPO, free_port, running_worker

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def worker_total(client: redis.Redis, field: str) -> int:
    return sum(int(client.hget(k, field) or 0) for k in client.smembers(keys.workers()))


def test_endpoint_sums_all_pool_processes_and_reads_redis_gauges(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a worker with two pool processes, a metrics port and JSON logs
    port = free_port()
    env = {**worker_env, "BULKTAG_METRICS_PORT": str(port), "BULKTAG_LOG_FORMAT": "json"}
    corpus = build_corpus(
        tmp_path / "photos", 24, sizes=[(320, 240)], repeat_fraction=0.25, broken=2
    )
    log = tmp_path / "worker.log"
    with running_worker(env, log, redis_client, 2):
        # When a job runs (chunks of 3: several per process)
        subprocess.run(
            [
                *BULKTAG,
                "submit",
                str(tmp_path / "photos"),
                "--job",
                "m",
                "--chunk-size",
                "3",
                "--wait",
                "--timeout",
                "120",
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        # ...and another job is still being enumerated (no worker has its chunks)
        store = ResultStore(redis_client)
        store.create_job("open", 4, "test")
        store.add_uris("open", 0, [["/a.jpg", "/b.jpg"]])
        samples = scrape(port)
        status = store.status("m")
        per_process = [
            int(redis_client.hget(k, "chunks") or 0) for k in redis_client.smembers(keys.workers())
        ]

    # Then the counters equal what the job and the workers' own counters say
    assert sorted(per_process)[0] > 0, per_process  # both processes worked
    images = value(samples, "bulktag_images_tagged_total")
    assert images == worker_total(redis_client, "forward_images")
    # (two processes may both forward a repeat whose chunks ran at the same moment)
    assert len(corpus.unique) <= images <= len(corpus.unique) + len(corpus.repeats)
    deduped = value(samples, "bulktag_dedupe_hits_total")
    assert deduped == status.deduped and images + deduped == status.ok
    assert value(samples, "bulktag_uris_total", status="ok") == status.ok
    assert value(samples, "bulktag_uris_total", status="error") == status.error == 2
    assert value(samples, "bulktag_errors_total", kind="DecodeError") == 2
    # ...the histograms are there and add up
    assert value(samples, "bulktag_batch_size_sum") == images
    assert value(samples, "bulktag_batch_seconds_count") == value(
        samples, "bulktag_batch_size_count"
    )
    assert value(samples, "bulktag_batch_seconds_sum") > 0
    assert value(samples, "bulktag_fetch_seconds_count", scheme="file") == status.total
    assert value(samples, "bulktag_chunk_seconds_count") == -(-status.total // 3)
    assert value(samples, "bulktag_chunk_seconds_bucket", le="+Inf") == -(-status.total // 3)
    # ...and the Redis gauges show the queue and the open job's progress
    assert value(samples, "bulktag_redis_up") == 1
    assert value(samples, "bulktag_queue_depth", queue="bulktag") == 0
    assert value(samples, "bulktag_jobs_active") == 1
    assert value(samples, "bulktag_job_uris", job="open", count="total") == 2
    assert value(samples, "bulktag_job_uris", job="open", count="pending") == 2

    # And every log line a chunk wrote is JSON naming its job and chunk
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    chunk_lines = [x for x in lines if x["job"] == "m"]
    assert len({x["chunk"] for x in chunk_lines}) == -(-status.total // 3)
    assert all(x["chunk"] and x["task"].startswith("bulktag.tag_chunk[") for x in chunk_lines)
    assert {"ts", "level", "logger", "process", "pid", "msg"} <= set(chunk_lines[0])
