"""The core promise, end to end: a real redis-server, a real `bulktag worker`, the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import redis
from PIL import Image

from producer.samples import build_corpus
from tests.reference import load_reference_model, reference_top3
from tests.servers import BULKTAG, REPO, running_worker

pytestmark = pytest.mark.e2e


def bulktag(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def worker_totals(client: redis.Redis, field: str) -> int:
    return sum(int(client.hget(k, field) or 0) for k in client.smembers("bulktag:workers"))


def add_special_images(folder: Path, source: Path) -> list[Path]:
    """EXIF-rotated JPEG, RGBA PNG and greyscale JPEG: decode paths the reference shares."""
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.open(source).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    rotated = folder / "rotated.jpg"
    base.save(rotated, exif=exif.tobytes())
    rgba = folder / "alpha.png"
    base.convert("RGBA").save(rgba)
    grey = folder / "grey.jpg"
    base.convert("L").save(grey)
    return [rotated, rgba, grey]


def test_folder_job_tags_every_uri_dedupes_and_matches_reference(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, dev_weights: Path
) -> None:
    # Given a folder of 60 photos (30% byte-identical repeats), 4 broken files, 3 odd modes
    photos = tmp_path / "photos"
    corpus = build_corpus(
        photos, 60, sizes=[(640, 480), (480, 640), (320, 240)], repeat_fraction=0.3, broken=4
    )
    special = add_special_images(photos / "special", corpus.unique[0])
    files = {str(p) for p in corpus.all + special}
    unique_good = len(corpus.unique) + len(special)

    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1):
        # When it is submitted and waited for
        bulktag(worker_env, "submit", str(photos), "--job", "trip", "--chunk-size", "16", "--wait")
        status = json.loads(bulktag(worker_env, "status", "trip", "--json"))
        records = [json.loads(x) for x in bulktag(worker_env, "results", "trip").splitlines()]
        forwarded_first = worker_totals(redis_client, "forward_images")

        # Then every URI has exactly one final record and the counts add up
        assert sorted(r["uri"] for r in records) == sorted(files)
        assert status["state"] == "done"
        assert status["total"] == len(files) == status["ok"] + status["error"]
        assert status["pending"] == 0
        errors = {r["uri"]: r["error"] for r in records if r["status"] == "error"}
        assert set(errors) == {str(p) for p in corpus.broken}
        assert all(reason and len(reason) > 10 for reason in errors.values())
        assert status["error"] == len(corpus.broken)
        # ...repeats were served without a forward pass
        assert forwarded_first == unique_good
        assert status["deduped"] == len(corpus.repeats)

        # When the same folder is submitted again as a new job
        bulktag(worker_env, "submit", str(photos), "--job", "again", "--wait")
        again = json.loads(bulktag(worker_env, "status", "again", "--json"))
        # Then no forward pass runs at all
        assert worker_totals(redis_client, "forward_images") == forwarded_first
        assert again["deduped"] == again["ok"] == status["ok"]

    # And every ok record agrees with the plain torchvision pipeline on the same weights
    model = load_reference_model(dev_weights)
    for rec in records:
        if rec["status"] != "ok":
            continue
        indices, scores = reference_top3(model, Path(rec["uri"]))
        assert [t["index"] for t in rec["top3"]] == indices, rec["uri"]
        for got, want in zip(rec["top3"], scores, strict=True):
            assert abs(got["score"] - want) <= 1e-4, rec["uri"]
        assert rec["model"].startswith("resnet18-")


def test_model_loads_once_per_process_and_redelivery_is_idempotent(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    corpus = build_corpus(tmp_path / "p", 24, sizes=[(320, 240)], repeat_fraction=0.0)
    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 2):
        # 24 images in chunks of 2 -> 12 tasks over 2 processes
        bulktag(worker_env, "submit", str(tmp_path / "p"), "--job", "many", "--chunk-size", "2")
        # ...and the same folder through the Python API other applications use
        from producer import submit
        from tasks.settings import Settings

        job = submit(
            str(tmp_path / "p"), job="more", chunk_size=3, settings=Settings.from_env(worker_env)
        )
        final = job.wait(timeout=120)
        assert (final.state, final.total, final.ok + final.error) == ("done", 24, 24)
        api_records = list(job.results())
        assert [r["uri"] for r in api_records] == [str(p) for p in sorted(corpus.unique)]
        _wait_done(worker_env, "many")
        stats = [redis_client.hgetall(k) for k in redis_client.smembers("bulktag:workers")]
        assert len(stats) == 2
        assert [int(s["model_loads"]) for s in stats] == [1, 1]
        assert sum(int(s.get("chunks", 0)) for s in stats) == 12 + 8
        before = json.loads(bulktag(worker_env, "status", "many", "--json"))
        records_before = bulktag(worker_env, "results", "many")

        # When one chunk of the finished job is delivered a second time
        from tasks.contract import TASK_TAG_CHUNK
        from worker.app import create_app

        app = create_app(Settings.from_env(worker_env))
        items = [[0, str(corpus.unique[0])], [1, str(corpus.unique[1])]]

        def handled() -> int:  # a done job's duplicate is skipped, and counted as such
            return worker_totals(redis_client, "chunks") + worker_totals(
                redis_client, "skipped_chunks"
            )

        chunks_before = handled()
        app.send_task(TASK_TAG_CHUNK, args=["many", items, {}], queue="bulktag")
        deadline = time.monotonic() + 30
        while handled() == chunks_before:
            assert time.monotonic() < deadline, "redelivered chunk was not processed"
            time.sleep(0.1)

        # Then the job's counts and records are unchanged
        after = json.loads(bulktag(worker_env, "status", "many", "--json"))
        assert {k: after[k] for k in ("total", "ok", "error", "deduped", "state")} == {
            k: before[k] for k in ("total", "ok", "error", "deduped", "state")
        }
        assert bulktag(worker_env, "results", "many") == records_before


def _wait_done(env: dict[str, str], job: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while json.loads(bulktag(env, "status", job, "--json"))["state"] != "done":
        assert time.monotonic() < deadline, f"job {job} not done"
        time.sleep(0.3)
