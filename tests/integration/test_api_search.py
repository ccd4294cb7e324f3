"""`GET /search` on a real redis-server: resolution, filters, paging, thumbnails, auth."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from producer.api import create_api
from tasks.model_labels import ModelLabels
from tasks.model_registry import ModelRegistry
from tasks.settings import Settings
from tasks.store import ResultStore
from tests.integration.test_api import LOCAL
from tests.labelled_jobs import MODEL, ok, seed_job
from tests.servers import results_env

LABELS = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    store = ResultStore(redis.Redis.from_url(redis_url, decode_responses=True))
    ModelLabels(store.r).save(MODEL, LABELS)
    ModelRegistry(store.r).loaded(MODEL)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.new("RGB", (64, 48), (i * 20, 80, 160)).save(photos / f"{i:02d}.jpg")
    seed_job(
        store,
        "first",
        [ok(str(photos / f"{i:02d}.jpg"), ("goldfish", 1, 0.5 + i / 100)) for i in range(6)],
    )
    time.sleep(0.01)
    seed_job(
        store,
        "second",
        [
            ok(str(photos / f"{i:02d}.jpg"), ("tench", 0, 0.7), ("goldfish", 1, 0.2))
            for i in range(6, 12)
        ],
    )
    env = {"BULKTAG_REDIS_URL": redis_url, "BULKTAG_ALLOWED_ROOTS": str(tmp_path), **results_env()}
    settings = replace(Settings.from_env(env), weights=tmp_path / "no-local-weights.pt")
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        yield c


def test_search_pages_newest_first_with_job_and_index_for_thumbnails(client: TestClient) -> None:
    page = client.get("/search", params={"label": "Goldfish", "limit": 5}).json()
    assert page["model"] == MODEL and page["labels"] == [{"label": "goldfish", "index": 1}]
    assert [(i["job"], i["index"]) for i in page["items"]] == [
        ("second", 5),
        ("second", 4),
        ("second", 3),
        ("second", 2),
        ("second", 1),
    ]
    assert page["next_offset"] == 5
    seen = list(page["items"])
    while page["next_offset"] is not None:
        page = client.get(
            "/search", params={"label": "goldfish", "limit": 5, "offset": page["next_offset"]}
        ).json()
        seen += page["items"]
    assert len(seen) == 12 and len({(i["job"], i["index"]) for i in seen}) == 12
    # Every hit's thumbnail is served from its job and index
    first = seen[0]
    thumb = client.get(f"/jobs/{first['job']}/thumbs/{first['index']}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_search_filters_min_score_job_top1_and_several_labels(client: TestClient) -> None:
    def hits(**params: str | float | bool | list[str]) -> list[tuple[str, int]]:
        resp = client.get("/search", params=params)
        assert resp.status_code == 200, resp.text
        return [(i["job"], i["index"]) for i in resp.json()["items"]]

    assert hits(label="goldfish", min_score=0.54) == [("first", 5), ("first", 4)]
    assert hits(label="goldfish", job="first", limit=2) == [("first", 5), ("first", 4)]
    assert len(hits(label="goldfish", top1=True)) == 6
    assert len(hits(label=["0", "hammerhead"])) == 6
    assert hits(label="goldfish", model=f"{MODEL}+fast") == []  # its labels, no records


def test_unknown_label_and_job_are_clear_errors(client: TestClient) -> None:
    resp = client.get("/search", params={"label": "goldfishes"})
    assert resp.status_code == 422
    assert resp.json()["detail"] == 'unknown label "goldfishes"; did you mean "goldfish"?'
    assert client.get("/search", params={"label": "tench", "job": "nope"}).status_code == 404
    assert client.get("/search").status_code == 422  # a label is required
    assert client.get("/search", params={"label": "tench", "min_score": 2}).status_code == 422


def test_search_needs_the_token_when_one_is_set(redis_url: str, tmp_path: Path) -> None:
    env = {"BULKTAG_REDIS_URL": redis_url, "BULKTAG_API_TOKEN": "t0ken"}
    with TestClient(create_api(Settings.from_env(env)), base_url=LOCAL) as c:
        assert c.get("/search", params={"label": "tench"}).status_code == 401
