"""Model upgrade: `bulktag reprocess` re-tags a job; both models' results live side by side."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tasks import keys
from tasks.store import ResultStore
from tests.servers import BULKTAG, REPO, WorkerProcess, running_worker
from weights.checkpoint import model_id_for
from weights.fetch import write_untrained

pytestmark = pytest.mark.e2e


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def ok(env: dict[str, str], *args: str) -> str:
    proc = run(env, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def records(env: dict[str, str], *args: str) -> list[dict]:
    return [json.loads(line) for line in ok(env, "results", *args).splitlines()]


def forwarded_by(client: redis.Redis, model: str) -> int:
    stats = [client.hgetall(k) for k in client.smembers(keys.workers())]
    return sum(int(s.get("forward_images", 0)) for s in stats if s.get("model_id") == model)


def test_reprocess_retags_with_the_new_model_and_keeps_the_old_results(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, dev_weights: Path
) -> None:
    # Given a job tagged by model A (untrained seed 0)
    corpus = build_corpus(tmp_path / "photos", 10, sizes=[(320, 240)], repeat_fraction=0.2)
    seed1 = tmp_path / "weights" / "resnet18-seed1.pt"
    model_b = model_id_for(write_untrained(seed1, seed=1))
    with running_worker(worker_env, tmp_path / "worker-a.log", redis_client, 1):
        ok(worker_env, "submit", str(tmp_path / "photos"), "--job", "trip", "--wait")
    old = records(worker_env, "trip")
    model_a = old[0]["model"]
    assert model_a != model_b and {r["model"] for r in old} == {model_a}

    # When the workers are upgraded to model B and the job is reprocessed
    env_b = {**worker_env, "BULKTAG_WEIGHTS": str(seed1)}
    worker_b = WorkerProcess(env_b, tmp_path / "worker-b.log", "--concurrency", "1").start()
    try:
        worker_b.wait_ready(redis_client, processes=2)  # the stopped A process + B's
        assert ok(env_b, "models").splitlines()[0].startswith(f"* {model_b}")
        out = ok(env_b, "reprocess", "trip", "--wait", "--timeout", "120")
        again = run(env_b, "reprocess", "trip")
    finally:
        worker_b.stop()

    # Then a new job holds model B's records of the same URIs, each image forwarded once
    new_job = f"trip.{model_b}"
    assert f"job {new_job}: 10 URIs of trip enqueued for model {model_b}" in out
    assert forwarded_by(redis_client, model_b) == len(corpus.unique)
    # ...`results` picks the current model (B) by default, and A on request
    current = records(env_b, "trip")
    assert {r["model"] for r in current} == {model_b}
    assert [r["uri"] for r in current] == [r["uri"] for r in old]
    assert records(env_b, "trip", "--model", model_a) == old
    assert records(env_b, new_job, "--model", model_a) == old
    assert records(env_b, new_job) == current
    # ...the two models really disagree (different random weights), so nothing was reused
    assert any(a["top3"] != b["top3"] for a, b in zip(old, current, strict=True))
    # ...both models' dedupe caches live side by side
    for model in (model_a, model_b):
        assert ResultStore(redis_client).cache_entries(model) == len(corpus.unique)
    # ...and re-tagging again with the same model is refused with one clear line
    assert again.returncode == 1
    assert f"already has records by the current model {model_b}" in again.stderr
    missing = run(env_b, "results", "trip", "--model", "resnet18-000000000000")
    assert missing.returncode == 1 and "no records by model" in missing.stderr
