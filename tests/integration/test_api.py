"""The HTTP API against a real redis-server: every route, auth, cancel, streaming, webhooks.

No worker runs here (tests/e2e/test_dashboard.py has one): where a test needs finished
records it writes them with ``ResultStore.record_outcomes``, the exact call a worker's
pipeline makes, so the API reads what it would read in production.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from producer.api import create_api
from producer.api.webhook import signature
from producer.submit import submit
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.servers import results_env

TOKEN = "s3cret-token"
# The Host every test client sends: the API answers loopback names only by default.
LOCAL = "http://localhost"


def photo(path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 50).convert("RGB").save(path, "JPEG", quality=85)
    return path


def settings_for(redis_url: str, root: Path, **changes: Any) -> Settings:
    env = {"BULKTAG_REDIS_URL": redis_url, "BULKTAG_ALLOWED_ROOTS": str(root), **results_env()}
    return replace(Settings.from_env(env), **changes)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [photo(tmp_path / "photos" / f"p{i}.jpg") for i in range(3)]


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_api(settings_for(redis_url, tmp_path)), base_url=LOCAL) as c:
        yield c


def finish(redis_url: str, job_id: str, errors: frozenset[int] = frozenset()) -> list[Record]:
    """Write every URI's final record the way a worker does; return the records."""
    store = ResultStore(connect(redis_url))
    outcomes = []
    for index, uri, _ in store.records(job_id):
        if index in errors:
            rec = Record(uri, None, "error", "not a recognised image format", None, "resnet18-x")
        else:
            top3 = [Label(f"label{k}", k, 0.5 - k / 10) for k in range(3)]
            rec = Record(uri, f"{index:064x}", "ok", None, top3, "resnet18-x")
        outcomes.append((index, rec, False))
    store.record_outcomes(job_id, outcomes)
    return [rec for _, rec, _ in outcomes]


def test_healthz_reports_redis(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "redis": True, "detail": None}


def test_healthz_is_503_when_redis_is_down(tmp_path: Path) -> None:
    dead = settings_for("redis://127.0.0.1:1/0", tmp_path)
    with TestClient(create_api(dead), base_url=LOCAL) as c:
        resp = c.get("/healthz")
        assert resp.status_code == 503 and resp.json()["redis"] is False
        assert c.get("/jobs").status_code == 503


def test_token_required_everywhere_but_healthz_and_static(redis_url: str, tmp_path: Path) -> None:
    settings = settings_for(redis_url, tmp_path, api_token=TOKEN)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        for path in ("/jobs", "/jobs/x", "/jobs/x/results", "/jobs/x/thumbs/0", "/models"):
            resp = c.get(path)
            assert resp.status_code == 401, path
            assert resp.headers["www-authenticate"] == "Bearer"
        assert c.delete("/jobs/x").status_code == 401
        assert c.post("/jobs", json={"source": str(tmp_path)}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert c.get("/jobs", headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/jobs", headers=right).json() == {"jobs": []}
        # open: health probes, the page and its assets
        assert c.get("/healthz").status_code == 200
        assert "<title>bulktag</title>" in c.get("/").text
        assert c.get("/static/dashboard.js").status_code == 200
        assert "token" in repr(settings) and TOKEN not in repr(settings)


def test_submit_uris_then_status_list_and_queue(
    client: TestClient, photos: list[Path], redis_client: redis.Redis, redis_url: str
) -> None:
    resp = client.post(
        "/jobs", json={"uris": [str(p) for p in photos], "job": "api-1", "chunk_size": 2}
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == "/jobs/api-1"
    body = resp.json()
    assert body["job"] == "api-1" and body["state"] == "running"
    assert (body["total"], body["pending"], body["chunk_size"]) == (3, 3, 2)
    # two chunk messages wait in the Celery queue for a worker
    assert redis_client.llen("bulktag") == 2

    status = client.get("/jobs/api-1").json()
    expected = ResultStore(connect(redis_url)).status("api-1").to_dict()
    assert status == {**expected, "submit_error": None}  # `status --json`, plus one field
    assert [j["job"] for j in client.get("/jobs").json()["jobs"]] == ["api-1"]
    assert client.get("/jobs/nope").status_code == 404


def test_submit_source_folder_and_refusals(client: TestClient, photos: list[Path]) -> None:
    folder = str(photos[0].parent)
    resp = client.post("/jobs", json={"source": folder, "job": "folder"})
    assert resp.status_code == 201 and resp.json()["total"] == 3

    assert client.post("/jobs", json={"source": folder, "job": "folder"}).status_code == 409
    outside = client.post("/jobs", json={"source": "/etc"})
    assert outside.status_code == 403 and "allowed roots" in outside.json()["detail"]
    listing = client.post("/jobs", json={"source": "@/etc/passwd"})
    assert listing.status_code == 403  # a list file outside the roots is never read
    assert client.post("/jobs", json={"source": "-"}).status_code == 400
    assert client.post("/jobs", json={"uris": ["relative.jpg"]}).status_code == 400
    assert client.post("/jobs", json={"uris": ["ftp://x/y.jpg"]}).status_code == 400
    missing = client.post("/jobs", json={"uris": [folder + "/missing.jpg"]})
    assert missing.status_code == 400 and "no such file" in missing.json()["detail"]
    empty = client.post("/jobs", json={"source": str(Path(folder).parent / "empty")})
    assert empty.status_code == 400
    both = client.post("/jobs", json={"uris": [str(photos[0])], "source": folder})
    assert both.status_code == 422
    assert client.post("/jobs", json={"source": folder, "job": "../x"}).status_code == 422


def test_results_stream_as_jsonl_and_records_page(
    client: TestClient, photos: list[Path], redis_url: str
) -> None:
    uris = [str(p) for p in photos]
    client.post("/jobs", json={"uris": uris, "job": "res"})
    pending = client.get("/jobs/res/results", params={"include_pending": "true"})
    assert [json.loads(x)["status"] for x in pending.text.splitlines()] == ["pending"] * 3
    assert client.get("/jobs/res/results").text == ""

    records = finish(redis_url, "res", errors=frozenset({1}))
    with client.stream("GET", "/jobs/res/results") as resp:
        assert resp.headers["content-type"] == "application/x-ndjson"
        lines = list(resp.iter_lines())
    assert [json.loads(x) for x in lines] == [r.to_dict() for r in records]
    assert client.get("/jobs/res").json()["state"] == "done"

    page = client.get("/jobs/res/records", params={"limit": 2}).json()
    assert [i["index"] for i in page["items"]] == [0, 1] and page["next_offset"] == 2
    assert page["items"][0]["top3"][0]["label"] == "label0"
    errors = client.get("/jobs/res/records", params={"only": "error"}).json()
    assert [(i["index"], i["error"]) for i in errors["items"]] == [
        (1, "not a recognised image format")
    ]
    assert errors["next_offset"] is None
    assert client.get("/jobs/nope/results").status_code == 404


def test_cancel(client: TestClient, photos: list[Path]) -> None:
    client.post("/jobs", json={"uris": [str(p) for p in photos], "job": "c"})
    resp = client.delete("/jobs/c")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    assert client.get("/jobs/c").json()["state"] == "cancelled"
    assert client.delete("/jobs/nope").status_code == 404


def test_big_source_answers_202_while_enumerating(
    redis_url: str, tmp_path: Path, photos: list[Path], redis_client: redis.Redis
) -> None:
    # Given a queue cap of one chunk and no worker: enumeration blocks after one chunk
    settings = settings_for(redis_url, tmp_path, max_queued=1)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        folder = str(photos[0].parent)
        resp = c.post("/jobs", json={"source": folder, "job": "big", "chunk_size": 1})
        # Then the request returns at once with the job still enumerating
        assert resp.status_code == 202, resp.text
        assert resp.json()["state"] == "enumerating"
        # When it is cancelled and the queue drains, the submission stops and says why
        assert c.delete("/jobs/big").json()["state"] == "cancelled"
        redis_client.delete("bulktag")
        deadline = time.monotonic() + 10
        while not (body := c.get("/jobs/big").json()).get("submit_error"):
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert "cancelled" in body["submit_error"]
        assert body["total"] < 3


def test_thumbnail_only_for_uris_of_the_job(
    redis_url: str, tmp_path: Path, photos: list[Path]
) -> None:
    # Given a job (made by another producer) whose second URI lies outside the API's roots
    secret = photo(tmp_path / "private" / "secret.jpg")
    wide = settings_for(redis_url, tmp_path)
    submit([str(photos[0]), str(secret)], job="t", settings=wide)
    api_settings = settings_for(redis_url, photos[0].parent)
    with TestClient(create_api(api_settings), base_url=LOCAL) as c:
        resp = c.get("/jobs/t/thumbs/0")
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(resp.content))
        assert thumb.format == "JPEG" and max(thumb.size) == 256
        # the fetch path's allowed roots apply to thumbnails too
        refused = c.get("/jobs/t/thumbs/1")
        assert refused.status_code == 403 and "allowed roots" in refused.json()["detail"]
        # only indices of the job's own URIs exist; a path is not an index
        assert c.get("/jobs/t/thumbs/2").status_code == 404
        assert c.get("/jobs/t/thumbs/-1").status_code == 422
        assert c.get("/jobs/t/thumbs/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
        assert c.get("/jobs/other/thumbs/0").status_code == 404


def test_models_reports_untrained_workers(client: TestClient, redis_url: str) -> None:
    store = ResultStore(connect(redis_url))
    store.worker_info("w1", 1, model_id="resnet18-aaa", trained=0)
    store.worker_info("w1", 2, model_id="resnet18-aaa", trained=0)
    store.worker_info("w2", 1, model_id="resnet18-bbb", trained=1)
    assert client.get("/models").json() == {
        "models": [
            {"model_id": "resnet18-aaa", "trained": False, "processes": 2},
            {"model_id": "resnet18-bbb", "trained": True, "processes": 1},
        ]
    }


class Hook(ThreadingHTTPServer):
    """Receives webhooks; answers 503 to the first ``fail_first`` requests."""

    daemon_threads = True

    def __init__(self, fail_first: int) -> None:
        super().__init__(("127.0.0.1", 0), HookHandler)
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.delivered = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook?x=1"


class HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        failing = len(self.server.requests) <= self.server.fail_first
        self.send_response(503 if failing else 204)
        self.end_headers()
        if not failing:
            self.server.delivered.set()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook(fail_first=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_delivered_once_when_job_finishes(
    redis_url: str, tmp_path: Path, photos: list[Path], hook: Hook
) -> None:
    settings = settings_for(redis_url, tmp_path, allow_private_networks=True, api_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        body = {"uris": [str(p) for p in photos], "job": "hooked", "webhook_url": hook.url}
        assert c.post("/jobs", json=body, headers=auth).status_code == 201
        time.sleep(1.5)  # the watcher polls every second: nothing is sent while it runs
        assert hook.requests == []
        finish(redis_url, "hooked")
        assert hook.delivered.wait(15), hook.requests
        final = c.get("/jobs/hooked", headers=auth).json()
        time.sleep(1.5)  # and nothing more after the delivery
    # the first attempt got a 503 and was retried; the retry carried the final status
    assert len(hook.requests) == 2
    headers, raw = hook.requests[-1]
    assert json.loads(raw) == final and final["state"] == "done" and final["ok"] == 3
    assert headers["X-Bulktag-Event"] == "job.finished"
    assert headers["X-Bulktag-Signature"] == signature(TOKEN, raw)


def test_webhook_to_private_address_refused_by_default(
    client: TestClient, photos: list[Path], hook: Hook
) -> None:
    body = {"uris": [str(photos[0])], "job": "h", "webhook_url": hook.url}
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 400 and "SSRF" in resp.json()["detail"]
    assert client.get("/jobs/h").status_code == 404  # nothing was submitted
    bad = client.post("/jobs", json={**body, "webhook_url": "ftp://example.com/x"})
    assert bad.status_code == 400
