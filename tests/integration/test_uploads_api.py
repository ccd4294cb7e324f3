"""``POST /uploads`` against a real redis-server: caps, sniffing, auth, lanes, ``?wait``.

No worker runs here (tests/e2e/test_uploads.py has one): what is checked is what the
API itself decides (stored or refused, the records it writes for refused files, the
chunk messages it leaves on the interactive lane) and how ``?wait`` ends.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from producer.api import create_api
from producer.upload_job import prune_uploads
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.integration.test_api import LOCAL
from tests.servers import results_env

TOKEN = "upload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def jpeg_bytes(size: tuple[int, int] = (320, 240), seed: int = 0) -> bytes:
    out = io.BytesIO()
    img = Image.effect_noise(size, 40 + seed).convert("RGB")
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (64, 48), (10, 200, 30, 128)).save(out, "PNG")
    return out.getvalue()


def settings_for(redis_url: str, root: Path, **changes: Any) -> Settings:
    env = {
        "BULKTAG_REDIS_URL": redis_url,
        "BULKTAG_ALLOWED_ROOTS": str(root / "photos"),
        "BULKTAG_UPLOAD_DIR": str(root / "uploads"),
        **results_env(),
    }
    return replace(Settings.from_env(env), api_token=TOKEN, **changes)


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_api(settings_for(redis_url, tmp_path)), base_url=LOCAL) as c:
        yield c


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "uploads"
    return sorted(p for p in root.glob("*/*") if p.parent.name != ".incoming")


def incoming(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "uploads" / ".incoming").glob("*"))


def test_upload_stores_by_content_sniffs_and_queues_on_the_high_lane(
    client: TestClient, tmp_path: Path, redis_client: redis.Redis
) -> None:
    photo, png = jpeg_bytes(), png_bytes()
    # Given a photo, a PNG named .txt and a text file named .jpg
    files = [
        ("files", ("holiday.jpg", photo, "image/jpeg")),
        ("files", ("drawing.txt", png, "text/plain")),
        ("files", ("notes.jpg", b"just some notes\nnot a photo\n", "image/jpeg")),
    ]
    resp = client.post("/uploads", files=files, headers=AUTH)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    job = body["job"]
    items = body["items"]
    assert [(i["index"], i["filename"]) for i in items] == [
        (0, "holiday.jpg"),
        (1, "drawing.txt"),
        (2, "notes.jpg"),
    ]
    assert items[0]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert items[1]["sha256"] == hashlib.sha256(png).hexdigest()
    # the two images are stored under their content address with the sniffed extension
    assert stored_files(tmp_path) == sorted(
        [
            tmp_path / "uploads" / items[0]["sha256"][:2] / f"{items[0]['sha256']}.jpg",
            tmp_path / "uploads" / items[1]["sha256"][:2] / f"{items[1]['sha256']}.png",
        ]
    )
    assert incoming(tmp_path) == []
    # the text file is not stored; its record is already final, with its reason
    assert items[2]["status"] == "error"
    assert items[2]["error"] == "not an image: its content is text, whatever its name says"
    assert [i["status"] for i in items[:2]] == ["pending", "pending"]
    # one chunk of the two images waits on the interactive lane, none on the bulk queue
    assert redis_client.llen("bulktag.high") == 1 and redis_client.llen("bulktag") == 0
    raw = redis_client.lindex("bulktag.high", 0)
    assert isinstance(raw, str | bytes)
    message = json.loads(raw)
    args = json.loads(base64.b64decode(message["body"]))[0]
    assert args[0] == job and [i for i, _ in args[1]] == [0, 1]
    status = client.get(f"/jobs/{job}", headers=AUTH).json()
    assert (status["total"], status["error"], status["state"]) == (3, 1, "running")
    assert ResultStore(redis_client).job_field(job, "priority") == "high"


def test_same_bytes_twice_are_stored_once(client: TestClient, tmp_path: Path) -> None:
    photo = jpeg_bytes()
    for name in ("a.jpg", "b.jpeg"):
        resp = client.post("/uploads", files=[("files", (name, photo))], headers=AUTH)
        assert resp.status_code == 201
    assert len(stored_files(tmp_path)) == 1


def test_auth_is_required_and_nothing_is_stored_without_it(
    client: TestClient, tmp_path: Path
) -> None:
    files = [("files", ("a.jpg", jpeg_bytes()))]
    resp = client.post("/uploads", files=files)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/uploads", files=files, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401
    assert stored_files(tmp_path) == [] and not (tmp_path / "uploads" / ".incoming").exists()


def test_missing_field_or_not_multipart_is_422(client: TestClient) -> None:
    other = client.post("/uploads", files=[("photo", ("a.jpg", jpeg_bytes()))], headers=AUTH)
    assert other.status_code == 422 and "'files'" in other.json()["detail"]
    form = client.post("/uploads", data={"files": "not a file"}, headers=AUTH)
    assert form.status_code == 422
    as_json = client.post("/uploads", json={"files": []}, headers=AUTH)
    assert as_json.status_code == 422 and "multipart/form-data" in as_json.json()["detail"]


def test_per_file_cap_ends_that_file_as_an_error_only(
    redis_url: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    small, big = jpeg_bytes((64, 48)), jpeg_bytes((640, 480))
    assert len(small) < 5000 < len(big)
    settings = settings_for(redis_url, tmp_path, upload_max_bytes=5000)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        files = [("files", ("small.jpg", small)), ("files", ("big.jpg", big))]
        resp = c.post("/uploads", files=files, headers=AUTH)
    assert resp.status_code == 201
    small_item, big_item = resp.json()["items"]
    assert small_item["status"] == "pending"
    assert big_item["status"] == "error"
    assert big_item["error"] == (
        f"file is {len(big)} bytes, over the 5000-byte upload limit (BULKTAG_UPLOAD_MAX_BYTES)"
    )
    assert big_item["size"] == len(big)
    assert len(stored_files(tmp_path)) == 1 and incoming(tmp_path) == []


def test_total_cap_is_413_by_declared_length_and_by_streamed_bytes(
    redis_url: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    photo = jpeg_bytes((640, 480))
    settings = settings_for(redis_url, tmp_path, upload_max_total_bytes=len(photo) * 2)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        files = [("files", (f"p{i}.jpg", photo)) for i in range(3)]
        declared = c.post("/uploads", files=files, headers=AUTH)
        assert declared.status_code == 413, declared.text
        assert "BULKTAG_UPLOAD_MAX_TOTAL_BYTES" in declared.json()["detail"]

        # a chunked body declares no length: it is counted as it arrives
        boundary = "b0undary"
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()

        def body() -> Iterator[bytes]:
            for _ in range(3):
                yield part + photo + b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        streamed = c.post(
            "/uploads",
            content=body(),
            headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert streamed.status_code == 413, streamed.text
    # nothing stored, no part left behind, no job made
    assert stored_files(tmp_path) == [] and incoming(tmp_path) == []
    assert ResultStore(redis_client).list_jobs() == []


def test_too_many_files_is_413(redis_url: str, tmp_path: Path) -> None:
    settings = settings_for(redis_url, tmp_path, upload_max_files=2)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        files = [("files", (f"p{i}.jpg", jpeg_bytes(seed=i))) for i in range(3)]
        resp = c.post("/uploads", files=files, headers=AUTH)
    assert resp.status_code == 413 and "BULKTAG_UPLOAD_MAX_FILES" in resp.json()["detail"]
    assert stored_files(tmp_path) == [] and incoming(tmp_path) == []


def test_wait_returns_at_once_when_every_file_was_refused(client: TestClient) -> None:
    files = [("files", ("a.jpg", b"")), ("files", ("b.jpg", b"%PDF-1.7 ..."))]
    started = time.monotonic()
    resp = client.post("/uploads", params={"wait": 30}, files=files, headers=AUTH)
    assert time.monotonic() - started < 5
    body = resp.json()
    assert body["state"] == "done"
    assert [i["error"] for i in body["items"]] == [
        "not an image: its content is an empty file, whatever its name says",
        "not an image: its content is a PDF document, whatever its name says",
    ]


def test_wait_holds_until_records_are_final_or_time_runs_out(
    client: TestClient, redis_url: str
) -> None:
    # With no worker, the answer comes when the wait runs out, records still pending
    started = time.monotonic()
    resp = client.post(
        "/uploads", params={"wait": 1}, files=[("files", ("a.jpg", jpeg_bytes()))], headers=AUTH
    )
    assert 1 <= time.monotonic() - started < 5
    assert resp.json()["state"] == "running" and resp.json()["items"][0]["status"] == "pending"

    # When a "worker" writes the record while the request waits, the answer carries it
    store = ResultStore(connect(redis_url))

    def finish_soon() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for job in store.list_jobs(10):
                if store.status(job).ok == 0 and store.job_state(job) == "running":
                    uri = store.job_uri(job, 0)
                    assert uri is not None
                    top3 = [Label(f"l{k}", k, 0.5 - k / 10) for k in range(3)]
                    rec = Record(uri, "ab" * 32, "ok", None, top3, "resnet18-x")
                    store.record_outcomes(job, [(0, rec, False)])
                    return
            time.sleep(0.05)

    for job in store.list_jobs(10):  # the first job stays pending: end it, helper skips it
        store.cancel_job(job)
    helper = threading.Thread(target=finish_soon)
    helper.start()
    started = time.monotonic()
    resp = client.post(
        "/uploads",
        params={"wait": 20},
        files=[("files", ("b.jpg", jpeg_bytes(seed=3)))],
        headers=AUTH,
    )
    helper.join()
    assert time.monotonic() - started < 10
    body = resp.json()
    assert body["state"] == "done"
    assert body["items"][0]["status"] == "ok"
    assert [t["label"] for t in body["items"][0]["top3"]] == ["l0", "l1", "l2"]
    assert client.post("/uploads", params={"wait": 61}, headers=AUTH).status_code == 422


def test_priority_high_jobs_go_to_the_high_lane(
    client: TestClient, tmp_path: Path, redis_client: redis.Redis
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(jpeg_bytes(seed=i))
    high = client.post(
        "/jobs", json={"source": str(photos), "priority": "high", "chunk_size": 2}, headers=AUTH
    )
    assert high.status_code == 201, high.text
    normal = client.post("/jobs", json={"source": str(photos), "chunk_size": 3}, headers=AUTH)
    assert normal.status_code == 201
    assert (redis_client.llen("bulktag.high"), redis_client.llen("bulktag")) == (2, 1)
    bad = client.post("/jobs", json={"source": str(photos), "priority": "urgent"}, headers=AUTH)
    assert bad.status_code == 422


def test_retry_route_reenqueues_errors_on_the_jobs_lane(
    client: TestClient, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    files = [("files", ("a.jpg", jpeg_bytes())), ("files", ("b.jpg", jpeg_bytes(seed=2)))]
    job = client.post("/uploads", files=files, headers=AUTH).json()["job"]
    redis_client.delete("bulktag.high")
    store = ResultStore(connect(redis_url))
    uri0, uri1 = store.job_uri(job, 0), store.job_uri(job, 1)
    assert uri0 and uri1
    top3 = [Label("l", 1, 0.9)] * 3
    store.record_outcomes(
        job,
        [
            (0, Record(uri0, "a" * 64, "ok", None, top3, "m"), False),
            (1, Record(uri1, None, "error", "transient: timed out", None, "m"), False),
        ],
    )
    resp = client.post(f"/jobs/{job}/retry", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"job": job, "round": 1, "errors": 1, "pending": 0, "chunks": 1}
    assert redis_client.llen("bulktag.high") == 1 and redis_client.llen("bulktag") == 0
    assert client.get(f"/jobs/{job}", headers=AUTH).json()["state"] == "running"
    assert client.post("/jobs/nope/retry", headers=AUTH).status_code == 404
    client.delete(f"/jobs/{job}", headers=AUTH)
    cancelled = client.post(f"/jobs/{job}/retry", headers=AUTH)
    assert cancelled.status_code == 400 and "cancelled" in cancelled.json()["detail"]


def test_prune_removes_old_unreferenced_uploads_only(
    client: TestClient, redis_url: str, tmp_path: Path
) -> None:
    # Given two uploaded photos, one of them in a job that is later deleted
    kept = client.post("/uploads", files=[("files", ("k.jpg", jpeg_bytes()))], headers=AUTH)
    gone = client.post("/uploads", files=[("files", ("g.jpg", jpeg_bytes(seed=5)))], headers=AUTH)
    store = ResultStore(connect(redis_url))
    store.delete_job(gone.json()["job"])
    settings = settings_for(redis_url, tmp_path)
    # When pruned with a zero age limit, only the unreferenced file goes
    report = prune_uploads(settings, older_than_days=0)
    assert (report.removed, report.kept) == (1, 1)
    (left,) = stored_files(tmp_path)
    assert left.stem == kept.json()["items"][0]["sha256"]
    # and nothing young is touched whatever references it
    store.delete_job(kept.json()["job"])
    assert prune_uploads(settings, older_than_days=1).removed == 0
    assert prune_uploads(settings, older_than_days=0).removed == 1
    assert stored_files(tmp_path) == []


def test_wait_is_skipped_when_every_wait_slot_is_taken(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer.api import uploads

    # Given every wait slot held (16 uploads already waiting)
    full = threading.BoundedSemaphore(1)
    full.acquire()
    monkeypatch.setattr(uploads, "_wait_slots", full)
    # Then a new upload is answered at once, pending, instead of holding a thread
    started = time.monotonic()
    resp = client.post(
        "/uploads", params={"wait": 30}, files=[("files", ("a.jpg", jpeg_bytes()))], headers=AUTH
    )
    assert time.monotonic() - started < 5
    assert resp.status_code == 201 and resp.json()["items"][0]["status"] == "pending"
