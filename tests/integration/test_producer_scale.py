"""The producer at scale, on a real redis-server: order, batching, memory, backpressure."""

from __future__ import annotations

import base64
import json
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from producer.backpressure import QueueGate
from producer.submit import PUBLISH_BATCH_URIS, growing, submit
from tasks import keys
from tasks.errors import ConfigError
from tasks.results_db import ResultsDB
from tasks.settings import Settings
from tasks.store import ResultStore

QUEUE = "bulktag"


def write_list(path: Path, n: int, start: int = 0) -> list[str]:
    uris = [f"s3://archive/{i // 1000:04d}/img-{i:07d}.jpg" for i in range(start, start + n)]
    path.write_text("\n".join(uris) + "\n")
    return uris


def messages(client: redis.Redis) -> list[dict[str, Any]]:
    """Decoded chunk messages in the order a worker would take them (kombu pops the tail)."""
    raw = reversed(client.lrange(keys.broker_queue(QUEUE), 0, -1))
    return [json.loads(base64.b64decode(json.loads(m)["body"])) for m in raw]  # type: ignore[arg-type]


def test_a_large_list_is_enqueued_in_order_with_batched_bookkeeping(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a list file of 20,000 URIs
    uris = write_list(tmp_path / "uris.txt", 20_000)
    settings = Settings(redis_url=redis_url)
    commits: list[int] = []

    def count(_conn: Any) -> None:
        commits.append(1)

    engine = ResultsDB.open(settings.results_url).engine  # the producer's own engine
    sa.event.listen(engine, "commit", count)

    # When it is submitted in chunks of 32
    try:
        job = submit(f"@{tmp_path / 'uris.txt'}", job="big", chunk_size=32, settings=settings)
    finally:
        sa.event.remove(engine, "commit", count)

    # Then the job counts every URI, in file order, and is running
    status = job.status()
    assert (status.total, status.state) == (20_000, "running")
    assert list(job.store.iter_uris("big")) == uris
    # ...one message per chunk, each naming its items by their index in the job
    sent = messages(redis_client)
    assert len(sent) == -(-20_000 // 32)
    flat = [item for args, _, _ in sent for item in args[1]]
    assert flat == [[i, uri] for i, uri in enumerate(uris)]
    assert all(args[0] == "big" and len(args[1]) <= 32 for args, _, _ in sent)
    # ...and the bookkeeping went in one transaction per publish batch, not one per chunk
    batches = len(list(growing(range(len(sent)), PUBLISH_BATCH_URIS // 32)))
    # (create_job, finish_enumeration and the per-batch cancel check add a few commits)
    assert batches <= len(commits) <= 2 * batches + 5 < len(sent) // 5


def test_memory_does_not_grow_with_the_number_of_uris(redis_url: str, tmp_path: Path) -> None:
    # Peak traced memory while submitting 4x the URIs stays about the same: nothing
    # proportional to the job is held in the producer.
    settings = Settings(redis_url=redis_url)
    peaks = []
    for n, name in ((5_000, "small"), (20_000, "large")):
        write_list(tmp_path / f"{name}.txt", n)
        tracemalloc.start()
        submit(f"@{tmp_path / f'{name}.txt'}", job=name, settings=settings)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    small, large = peaks
    assert large < 1.5 * small, peaks
    assert large < 8 * 1024 * 1024, peaks


def run_in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {"waits": []}

    def target() -> None:
        try:
            outcome["job"] = submit(on_wait=outcome["waits"].append, **kwargs)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def drain(client: redis.Redis) -> int:
    """Take every waiting message off the queue, as workers would; return how many."""
    taken = 0
    while client.rpop(keys.broker_queue(QUEUE)) is not None:
        taken += 1
    return taken


def test_backpressure_holds_the_producer_at_the_cap(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given 100 URIs in chunks of 4 (25 chunks) and a cap of 5 waiting chunks, no worker
    write_list(tmp_path / "uris.txt", 100)
    thread, outcome = run_in_thread(
        sources=f"@{tmp_path / 'uris.txt'}",
        job="capped",
        chunk_size=4,
        max_queued=5,
        settings=Settings(redis_url=redis_url),
    )
    # When nothing consumes the queue
    time.sleep(1.5)
    # Then the producer is waiting with exactly the cap queued, having enqueued no more
    assert thread.is_alive()
    assert redis_client.llen(keys.broker_queue(QUEUE)) == 5
    assert ResultStore(redis_client).status("capped").total == 20
    assert outcome["waits"] and max(outcome["waits"]) == 5

    # When "workers" take chunks as they come, the producer finishes, never above the cap
    taken, peak, deadline = 0, 0, time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline:
        peak = max(peak, int(redis_client.llen(keys.broker_queue(QUEUE))))  # type: ignore[arg-type]
        taken += drain(redis_client)
        time.sleep(0.05)
    thread.join(5)
    taken += drain(redis_client)
    assert "error" not in outcome, outcome.get("error")
    assert taken == 25 and peak <= 5
    assert outcome["job"].status().total == 100


def test_cancelling_a_job_stops_its_blocked_producer(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    write_list(tmp_path / "uris.txt", 1_000)
    thread, outcome = run_in_thread(
        sources=f"@{tmp_path / 'uris.txt'}",
        job="doomed",
        chunk_size=10,
        max_queued=3,
        settings=Settings(redis_url=redis_url),
    )
    time.sleep(0.8)
    ResultStore(redis_client).cancel_job("doomed")
    drain(redis_client)  # room again: the producer wakes, and sees the cancellation
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), ConfigError)
    assert "cancelled" in str(outcome["error"])
    assert ResultStore(redis_client).status("doomed").total < 1_000


def test_a_cancel_ends_the_wait_for_room_with_no_worker_draining(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a producer's gate blocked on a full queue that nothing consumes
    store = ResultStore(redis_client)
    assert store.create_job("stuck", 10, "test")
    redis_client.rpush(keys.broker_queue(QUEUE), "m1", "m2", "m3")
    gate = QueueGate(redis_client, QUEUE, 3, poll=0.05)
    outcome: dict[str, Exception] = {}

    def wait() -> None:
        try:
            gate.wait_for_room(1, store=store, job_id="stuck")
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()
    # When the job is cancelled, the queue still full
    store.cancel_job("stuck")
    thread.join(5)
    # Then the wait ends at once with the reason, and the queue is as it was
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), ConfigError)
    assert "stuck was cancelled while waiting" in str(outcome["error"])
    assert redis_client.llen(keys.broker_queue(QUEUE)) == 3


def test_a_negative_cap_is_refused_before_the_job_exists(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    write_list(tmp_path / "uris.txt", 3)
    with pytest.raises(ConfigError, match="max queued must be >= 0"):
        submit(
            f"@{tmp_path / 'uris.txt'}",
            job="neg",
            max_queued=-1,
            settings=Settings(redis_url=redis_url),
        )
    assert ResultStore(redis_client).job_state("neg") is None
