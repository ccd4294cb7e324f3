"""Uploads end to end: real redis-server, a real `bulktag worker`, the API in-process.

``POST /uploads?wait=`` answers with top-3s equal to the plain torchvision pipeline's;
the same bytes uploaded again are answered from the dedupe cache with no forward pass
(the worker's own counters say so); and an upload submitted behind a bulk backlog is
tagged long before the backlog drains (the interactive lane).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from producer.api import create_api
from producer.samples import build_corpus
from producer.submit import submit
from tasks.settings import Settings
from tests.integration.test_api import LOCAL
from tests.reference import load_reference_model, reference_top3
from tests.servers import running_worker

pytestmark = pytest.mark.e2e


def worker_totals(client: redis.Redis, field: str) -> int:
    return sum(int(client.hget(k, field) or 0) for k in client.smembers("bulktag:workers"))


def settled_totals(client: redis.Redis, field: str, want: int, timeout: float = 10) -> int:
    """The counter once it reaches ``want`` (or after ``timeout``): a worker bumps its
    counters just after storing the records, which is what ends the upload's wait."""
    deadline = time.monotonic() + timeout
    while (got := worker_totals(client, field)) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


@pytest.fixture
def upload_env(worker_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**worker_env, "BULKTAG_UPLOAD_DIR": str(tmp_path / "uploads")}


@pytest.fixture
def api(upload_env: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings.from_env(upload_env)
    with TestClient(create_api(settings), base_url=LOCAL) as client:
        yield client


def test_upload_wait_matches_reference_and_a_repeat_is_served_from_cache(
    upload_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    dev_weights: Path,
    api: TestClient,
) -> None:
    corpus = build_corpus(tmp_path / "photos", 2, sizes=[(640, 480), (480, 640)])
    photos = corpus.unique
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    files.append(("files", ("notes.jpg", b"shopping list: milk, eggs\n", "image/jpeg")))
    with running_worker(upload_env, tmp_path / "worker.log", redis_client, 1):
        # When two photos and a text file named .jpg are uploaded with ?wait
        resp = api.post("/uploads", params={"wait": 60}, files=files)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["state"] == "done"
        # Then each photo's top-3 is the reference pipeline's, the text file an error
        model = load_reference_model(dev_weights)
        for item, photo in zip(body["items"][:2], photos, strict=True):
            assert item["status"] == "ok", item
            indices, scores = reference_top3(model, photo)
            assert [t["index"] for t in item["top3"]] == indices
            for got, want in zip(item["top3"], scores, strict=True):
                assert abs(got["score"] - want) <= 1e-4
        assert body["items"][2]["status"] == "error"
        assert "not an image" in body["items"][2]["error"]
        forwarded = settled_totals(redis_client, "forward_images", 2)
        assert forwarded == 2
        deduped = worker_totals(redis_client, "deduped")

        # When the first photo is uploaded again (under another name)
        again = api.post(
            "/uploads", params={"wait": 60}, files=[("files", ("copy.jpg", photos[0].read_bytes()))]
        ).json()
        # Then it is answered from the cache: same top-3, no forward pass, one dedupe
        assert again["state"] == "done"
        assert again["items"][0]["top3"] == body["items"][0]["top3"]
        assert again["items"][0]["sha256"] == body["items"][0]["sha256"]
        assert settled_totals(redis_client, "deduped", deduped + 1) == deduped + 1
        assert worker_totals(redis_client, "forward_images") == forwarded
        status = api.get(f"/jobs/{again['job']}").json()
        assert (status["ok"], status["deduped"]) == (1, 1)

        # An iPhone photo (HEIC) named .jpg is judged by its bytes: stored as .heic, tagged
        from tests.format_fixtures import heic_bytes, photo

        heic = heic_bytes(photo(size=(640, 480)))
        answer = api.post(
            "/uploads", params={"wait": 60}, files=[("files", ("IMG_0001.jpg", heic))]
        ).json()
        assert answer["items"][0]["status"] == "ok", answer
        assert len(answer["items"][0]["top3"]) == 3
        digest = answer["items"][0]["sha256"]
        assert (tmp_path / "uploads" / digest[:2] / f"{digest}.heic").is_file()


def test_an_upload_jumps_a_bulk_backlog(
    upload_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, api: TestClient
) -> None:
    # Given one single-process worker busy with a bulk job of 24 chunks
    bulk = build_corpus(tmp_path / "bulk", 96, sizes=[(320, 240)], repeat_fraction=0.0)
    photo = build_corpus(tmp_path / "mine", 1, sizes=[(640, 480)], seed=7).unique[0]
    settings = replace(Settings.from_env(upload_env), chunk_size=4)
    with running_worker(upload_env, tmp_path / "worker.log", redis_client, 1):
        job = submit([str(bulk.root)], job="bulk", settings=settings)
        deadline = time.monotonic() + 60
        while job.status().done_count == 0:
            assert time.monotonic() < deadline, "bulk job never started"
            time.sleep(0.05)
        # When a photo is uploaded behind the backlog
        started = time.monotonic()
        resp = api.post(
            "/uploads", params={"wait": 60}, files=[("files", ("me.jpg", photo.read_bytes()))]
        )
        took = time.monotonic() - started
        # Then it is tagged after at most the running chunk, long before the bulk job ends
        body = resp.json()
        assert body["state"] == "done" and body["items"][0]["status"] == "ok"
        bulk_status = job.status()
        assert bulk_status.state == "running", "the bulk job ended first: no lane at work"
        assert bulk_status.done_count <= 72, bulk_status
        assert took < 20, took
        job.wait(timeout=180)
        assert job.status().ok == 96
