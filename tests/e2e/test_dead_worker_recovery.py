"""A dead worker's chunks come back within a minute, with DEFAULT settings.

Two real workers share a job; one is killed -9 (its main process, or one pool process),
or paused with SIGSTOP past its heartbeat TTL. Nothing here shortens the visibility
timeout (3600 s) or the heartbeat TTL (30 s): what passes here is what users get. Each
test ends with ``audit_job`` (one final record per URI, counts equal to the records).
The ``RELIABILITY`` lines (``pytest -s``) are the figures in docs/RELIABILITY.md.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from PIL import Image

from producer.samples import build_corpus
from tasks import keys
from tasks.heartbeats import recovery_bound
from tasks.settings import DEFAULT_HEARTBEAT_TTL, DEFAULT_VISIBILITY_TIMEOUT
from tests.invariants import audit_job, cli, done_count, is_done, results, snapshot, wait_for
from tests.servers import WorkerProcess

pytestmark = pytest.mark.e2e

# The promise: a dead worker's chunks are back on the queue within this long.
PROMISE_S = 60.0
PHOTOS = 300


def default_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The test environment with every delivery/heartbeat setting at its default.

    Loopback HTTP is allowed for the slow-source test's local server (the SSRF guard is
    no delivery setting).
    """
    env = {**worker_env, "BULKTAG_METRICS_PORT": "0", "BULKTAG_ALLOW_PRIVATE_NETWORKS": "true"}
    for name in ("BULKTAG_VISIBILITY_TIMEOUT", "BULKTAG_HEARTBEAT_TTL"):
        env.pop(name, None)
    return env


def photos(folder: Path, n: int) -> list[str]:
    corpus = build_corpus(folder, n, sizes=[(320, 240)], repeat_fraction=0.0)
    return [str(p) for p in corpus.all]


def start(env: dict[str, str], tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(
        env, tmp_path / f"worker-{name}.log", "--concurrency", "1", "--hostname", f"{name}@test"
    ).start()


def wait_ready(client: redis.Redis, *workers: WorkerProcess) -> None:
    for n, worker in enumerate(workers, start=1):
        worker.wait_ready(client, n, timeout=120)


def pool_pid(client: redis.Redis, node: str) -> int:
    """The live pool process of worker ``node`` (from its heartbeat)."""
    for raw in client.hvals(keys.heartbeats()):
        beat = json.loads(raw)
        if (
            beat["host"] == node
            and beat["role"] == "pool"
            and client.exists(keys.heartbeat(node, beat["pid"]))
        ):
            return int(beat["pid"])
    raise AssertionError(f"no live pool process for {node}")


def chunk_running_on(client: redis.Redis, job: str, node: str) -> str | None:
    for chunk, raw in client.hgetall(keys.job_in_flight(job)).items():
        if json.loads(raw)["host"] == node:
            return str(chunk)
    return None


def chunk_recorded(client: redis.Redis, job: str, chunk: str) -> bool:
    """Every URI of contiguous chunk ``"first-last"`` has its record (results database)."""
    first, last = (int(n) for n in chunk.split("-"))
    return all(rec is not None for _, _, rec in results().records_between(job, first, last + 1))


def last_record_at(client: redis.Redis, job: str) -> float:
    return results().status(job).finished_at or 0.0


def recovery_messages(env: dict[str, str], job: str) -> list[dict[str, object]]:
    status = json.loads(cli(env, "status", job, "--json").stdout)
    return list(status["health"]["recoveries"])


def submit_and_catch_a_chunk_on(
    env: dict[str, str], client: redis.Redis, folder: Path, job: str, node: str
) -> str:
    """Submit the job and return once ``node`` is part-way through a chunk."""
    cli(env, "submit", str(folder), "--job", job)
    wait_for("a few results", lambda: done_count(client, job) >= 32, 180)
    return wait_for(f"a chunk on {node}", lambda: chunk_running_on(client, job, node), 60, 0.02)


@pytest.fixture
def two_workers(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    env = default_env(worker_env)
    a, b = start(env, tmp_path, "a"), start(env, tmp_path, "b")
    try:
        wait_ready(redis_client, a, b)
        yield a, b
    finally:
        for worker in (a, b):
            worker.kill(signal.SIGCONT)
            worker.stop()


def test_defaults_promise_a_minute() -> None:
    # The promise rests on the defaults: heartbeat TTL + one sweep, well under a minute,
    # and the visibility timeout stays the (much later) last resort.
    assert recovery_bound(DEFAULT_HEARTBEAT_TTL) <= PROMISE_S
    assert DEFAULT_VISIBILITY_TIMEOUT >= 1800


def test_main_process_killed_its_chunk_is_requeued_within_a_minute(
    two_workers: tuple[WorkerProcess, WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    env = default_env(worker_env)
    a, _ = two_workers
    uris = photos(tmp_path / "photos", PHOTOS)
    # Given a job running on workers a and b, a part-way through a chunk
    held = submit_and_catch_a_chunk_on(env, redis_client, tmp_path / "photos", "km", "a@test")
    seen = [snapshot(redis_client, "km")]

    # When a's main process is killed -9 (its pool process dies with it: pdeathsig)
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGKILL)
    killed_at = time.time()
    a.proc.wait(10)

    # Then b re-queues a's chunk and the job completes
    wait_for("a's chunk to be redone", lambda: chunk_recorded(redis_client, "km", held), 240)
    chunk_back = time.time() - killed_at
    wait_for("the job to finish", lambda: is_done(redis_client, "km"), 240)
    recovered = recovery_messages(env, "km")
    audit = audit_job(redis_client, "km", uris, seen)
    assert (audit.ok, audit.error) == (PHOTOS, 0)
    assert [(r["host"], r["chunks"]) for r in recovered] == [("a@test", [held])]
    requeued_after = float(recovered[0]["requeued_at"]) - killed_at  # type: ignore[arg-type]
    assert requeued_after <= PROMISE_S
    assert int(redis_client.hget(keys.job_deliveries("km"), held) or 0) == 2
    assert redis_client.hlen(keys.broker_unacked()) == 0
    # ...`status` says what happened, `workers` shows a as gone
    text = cli(env, "status", "km").stdout
    assert "held by a worker that died at" in text and "re-queued at" in text, text
    states = json.loads(cli(env, "workers", "--json").stdout)
    assert {v["state"] for k, v in states.items() if ":a@test:" in k} == {"gone"}
    done_after = last_record_at(redis_client, "km") - killed_at
    print(
        audit.line("main process kill -9, defaults"),
        f"requeued_s={requeued_after:.1f} chunk_redone_s={chunk_back:.1f} "
        f"kill_to_last_record_s={done_after:.1f}",
    )


def test_pool_process_killed_its_chunk_is_rerun_at_once(
    two_workers: tuple[WorkerProcess, WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    env = default_env(worker_env)
    uris = photos(tmp_path / "photos", PHOTOS)
    # Given a job running on workers a and b, a's pool process part-way through a chunk
    held = submit_and_catch_a_chunk_on(env, redis_client, tmp_path / "photos", "kp", "a@test")
    seen = [snapshot(redis_client, "kp")]
    victim = int(json.loads(redis_client.hget(keys.job_in_flight("kp"), held) or "{}")["pid"])

    # When that one pool process is killed -9 (its main process lives on)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()

    # Then the main process requeues the chunk itself and the job completes
    wait_for("the chunk to be redone", lambda: chunk_recorded(redis_client, "kp", held), 240)
    chunk_back = time.time() - killed_at
    wait_for("the job to finish", lambda: is_done(redis_client, "kp"), 240)
    audit = audit_job(redis_client, "kp", uris, seen)
    assert (audit.ok, audit.error) == (PHOTOS, 0)
    assert int(redis_client.hget(keys.job_deliveries("kp"), held) or 0) == 2
    assert recovery_messages(env, "kp") == []  # no sweep was needed, none interfered
    done_after = last_record_at(redis_client, "kp") - killed_at
    print(
        audit.line("pool process kill -9, defaults"),
        f"chunk_redone_s={chunk_back:.1f} kill_to_last_record_s={done_after:.1f}",
    )


def test_worker_paused_past_its_ttl_then_resumed_leaves_one_record_per_uri(
    two_workers: tuple[WorkerProcess, WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    env = default_env(worker_env)
    a, _ = two_workers
    uris = photos(tmp_path / "photos", PHOTOS)
    # Given a job running on workers a and b, a part-way through a chunk
    held = submit_and_catch_a_chunk_on(env, redis_client, tmp_path / "photos", "ps", "a@test")
    seen = [snapshot(redis_client, "ps")]

    # When all of a is paused past its heartbeat TTL: b re-queues the chunk and runs it
    a.kill(signal.SIGSTOP)
    stopped_at = time.monotonic()
    wait_for("b to re-queue a's chunk", lambda: recovery_messages(env, "ps"), 120, 1.0)
    wait_for("the job to finish", lambda: is_done(redis_client, "ps"), 240)
    paused = time.monotonic() - stopped_at
    seen.append(snapshot(redis_client, "ps"))
    # ...and then a resumes and finishes its copy of the chunk (idempotent writes)
    a.kill(signal.SIGCONT)
    wait_for(
        "a to beat again",
        lambda: redis_client.exists(keys.heartbeat("a@test", a.proc.pid if a.proc else 0)),
        30,
    )
    wait_for("a to finish its copy", lambda: redis_client.hlen(keys.broker_unacked()) == 0, 120)

    # Then every URI still has exactly one record and the counts are right
    audit = audit_job(redis_client, "ps", uris, seen)
    assert (audit.ok, audit.error) == (PHOTOS, 0)
    assert int(redis_client.hget(keys.job_deliveries("ps"), held) or 0) == 2
    states = json.loads(cli(env, "workers", "--json").stdout)
    main = f"{keys.PREFIX}:worker:a@test:{a.proc.pid if a.proc else 0}"
    assert states[main]["state"] == "alive"
    print(audit.line("worker SIGSTOP past TTL then SIGCONT"), f"paused_s={paused:.1f}")


# -- a healthy slow chunk --------------------------------------------------------------

DRIP_BYTES = 60
DRIP_EVERY = 1.2  # seconds between bytes: well inside the 30 s read timeout


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((64, 48), 60).convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


class DripServer(ThreadingHTTPServer):
    """Serves one JPEG so slowly that its chunk outlives a heartbeat TTL and a sweep."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), DripHandler)
        self.image = jpeg()
        self.hits = 0


class DripHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DripServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits += 1
        body = self.server.image
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        step = max(1, len(body) // DRIP_BYTES)
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])
            self.wfile.flush()
            time.sleep(DRIP_EVERY)


def test_a_slow_chunk_is_never_requeued_while_its_worker_lives(
    two_workers: tuple[WorkerProcess, WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given an HTTP source that takes longer than a heartbeat TTL plus a sweep to answer
    # (within the fetch limits: every read well inside the read timeout, the whole
    # download inside the 120 s deadline), and a second worker idle beside the first
    env = default_env(worker_env)
    server = DripServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow.jpg"
        listing = tmp_path / "urls.txt"
        listing.write_text(url + "\n")
        started = time.monotonic()
        # When it is tagged
        cli(env, "submit", f"@{listing}", "--job", "slow")
        wait_for("the job to finish", lambda: is_done(redis_client, "slow"), 200, 0.5)
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()

    # Then it ran once, on one worker, and nothing was re-queued
    assert took > recovery_bound(DEFAULT_HEARTBEAT_TTL) + 5, f"not slow enough: {took:.0f}s"
    audit = audit_job(redis_client, "slow", [url], [])
    assert (audit.ok, audit.redelivered_chunks) == (1, 0)
    assert server.hits == 1
    assert recovery_messages(env, "slow") == []
    print(audit.line("healthy slow chunk, defaults"), f"chunk_s={took:.1f}")
