"""S3 sources against moto's real S3 HTTP API, driven by real boto3 and a real worker.

moto's ThreadedMotoServer serves the S3 REST API on a local port; the worker and the
producer reach it through ``AWS_ENDPOINT_URL`` (botocore's own variable) and the
in-process tests through ``BULKTAG_S3_ENDPOINT_URL`` (``Settings.s3_endpoint_url``).
A second, tiny fake endpoint answers 503 ``SlowDown`` and 403 on purpose, which moto
cannot, to prove botocore's retries and the error mapping on the wire.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

import producer.s3 as producer_s3
from producer.samples import build_corpus
from producer.sources import iter_source
from tasks.errors import ConfigError, NotAllowed, TransientUriError
from tasks.fetch_s3 import fetch_s3, s3_client
from tasks.settings import Settings
from tests.servers import BULKTAG, REPO, free_port, running_worker

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never read the machine's real profiles or credentials.
    "AWS_CONFIG_FILE": "/nonexistent/bulktag-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/bulktag-test-aws-credentials",
}
CAP = 300_000


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3(endpoint: str) -> Any:
    return boto3.session.Session(**_keys()).client("s3", endpoint_url=endpoint)


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


def bulktag(env: dict[str, str], *args: str) -> str:
    run = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_prefix_job_ends_every_object_ok_or_error_with_a_reason(
    moto_url: str, worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a bucket with photos under 2024/ (some repeated), broken objects, an oversized
    # one, a non-image key and a sibling prefix that must not be swept in
    client = s3(moto_url)
    client.create_bucket(Bucket="photos")
    corpus = build_corpus(tmp_path / "c", 12, sizes=[(320, 240)], repeat_fraction=0.25, broken=3)
    uploaded: dict[str, bytes] = {}
    for path in corpus.all:
        key = f"2024/{path.relative_to(corpus.root)}"
        uploaded[f"s3://photos/{key}"] = path.read_bytes()
        client.put_object(Bucket="photos", Key=key, Body=path.read_bytes())
    client.put_object(Bucket="photos", Key="2024/huge.jpg", Body=b"\xff" * (CAP + 1))
    client.put_object(Bucket="photos", Key="2024/notes.txt", Body=b"not listed")
    client.put_object(Bucket="photos", Key="2024-old/skip.jpg", Body=b"not listed")
    broken = {f"s3://photos/2024/{p.relative_to(corpus.root)}" for p in corpus.broken}
    huge, missing = "s3://photos/2024/huge.jpg", "s3://photos/2024/missing.jpg"

    env = {**worker_env, **FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto_url}
    env["BULKTAG_MAX_BYTES"] = str(CAP)
    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        # When the prefix and one missing key are submitted and waited for
        out = bulktag(env, "submit", "s3://photos/2024", missing, "--job", "y2024", "--wait")
        status = json.loads(bulktag(env, "status", "y2024", "--json"))
        records = {
            r["uri"]: r for r in map(json.loads, bulktag(env, "results", "y2024").splitlines())
        }
        bulktag(env, "results", "y2024", "-o", "s3://photos/exports/y2024.jsonl")

    # Then every listed object and the missing key have exactly one final record
    assert "y2024" in out
    assert set(records) == set(uploaded) | {huge, missing}
    assert status["state"] == "done" and status["pending"] == 0
    assert status["total"] == len(records) == status["ok"] + status["error"]
    # ...good photos are ok, hashed from the very bytes in the bucket
    good = set(uploaded) - broken
    for uri in good:
        assert records[uri]["status"] == "ok", records[uri]
        assert records[uri]["sha256"] == hashlib.sha256(uploaded[uri]).hexdigest()
    assert status["ok"] == len(good)
    assert status["deduped"] == len(corpus.repeats)
    # ...and every failure says why
    errors = {u: r["error"] for u, r in records.items() if r["status"] == "error"}
    assert set(errors) == broken | {huge, missing}
    assert errors[missing] == f"no such S3 object: {missing}"
    assert "over the 300000-byte limit" in errors[huge]
    assert all(len(errors[u]) > 10 for u in broken)
    # And the export written to S3 holds the same records
    body = client.get_object(Bucket="photos", Key="exports/y2024.jsonl")["Body"].read()
    exported = {r["uri"]: r for r in map(json.loads, body.decode().splitlines())}
    assert exported == records


def test_listing_is_paginated_and_streamed(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = s3(moto_url)
    client.create_bucket(Bucket="paged")
    keys = [f"p/{i:03d}.jpg" for i in range(10)] + ["p/readme.txt"]
    for key in keys:
        client.put_object(Bucket="paged", Key=key, Body=b"x")
    settings = Settings(s3_endpoint_url=moto_url)
    calls = Counter[str]()
    s3_client(settings).meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **_: calls.update(["list"])
    )
    monkeypatch.setattr(producer_s3, "PAGE_SIZE", 3)

    uris = iter_source("s3://paged/p/", settings=settings)
    assert next(uris) == "s3://paged/p/000.jpg"
    assert calls["list"] == 1  # the first URI came before the rest was listed
    rest = list(uris)
    assert rest == [f"s3://paged/p/{i:03d}.jpg" for i in range(1, 10)]  # not readme.txt
    assert calls["list"] == 4  # 11 keys at 3 a page


def test_listing_takes_heic_avif_raw_and_counts_the_other_keys(moto_url: str) -> None:
    from producer.selection import Selection

    client = s3(moto_url)
    client.create_bucket(Bucket="phone")
    keys = ["d/IMG_1.HEIC", "d/IMG_2.avif", "d/DSC_3.NEF", "d/a.jpg", "d/clip.MOV", "d/x.xmp"]
    for key in keys:
        client.put_object(Bucket="phone", Key=key, Body=b"x")
    settings = Settings(s3_endpoint_url=moto_url)
    selection = Selection()
    uris = list(iter_source("s3://phone/d/", settings=settings, selection=selection))
    assert uris == [
        f"s3://phone/{k}" for k in ("d/DSC_3.NEF", "d/IMG_1.HEIC", "d/IMG_2.avif", "d/a.jpg")
    ]
    assert selection.summary() == "skipped 2 files that are not images: .mov 1, .xmp 1"
    forced = Selection(["mov"])
    taken = list(iter_source("s3://phone/d/", settings=settings, selection=forced))
    assert "s3://phone/d/clip.MOV" in taken
    assert forced.skipped == {".xmp": 1}


def test_a_missing_bucket_fails_submission_with_one_clear_line(moto_url: str) -> None:
    settings = Settings(s3_endpoint_url=moto_url)
    with pytest.raises(ConfigError, match=r"cannot list s3://no-such-bucket/: no such S3 bucket"):
        list(iter_source("s3://no-such-bucket/", settings=settings))


class FakeS3(ThreadingHTTPServer):
    """Answers like S3 would when throttling or denying; counts requests per key."""

    daemon_threads = True

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), FakeS3Handler)
        self.failures = failures
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeS3Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeS3

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes, content_type: str = "application/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, code: str) -> None:
        self.reply(status, f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode())

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
            hits = self.server.hits[self.path]
        if self.path.endswith("/denied.jpg"):
            self.error(403, "AccessDenied")
        elif self.path.endswith("/throttled.jpg") and hits <= self.server.failures:
            self.error(503, "SlowDown")
        elif self.path.endswith("/throttled.jpg"):
            self.reply(200, b"JPEG-BYTES", "image/jpeg")
        else:
            self.error(404, "NoSuchKey")


@pytest.fixture
def fake_s3() -> Iterator[FakeS3]:
    server = FakeS3(failures=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_throttling_is_retried_with_backoff_then_succeeds(fake_s3: FakeS3) -> None:
    settings = Settings(s3_endpoint_url=fake_s3.url, fetch_attempts=3)
    assert fetch_s3("s3://bucket/throttled.jpg", settings) == b"JPEG-BYTES"
    assert fake_s3.hits["/bucket/throttled.jpg"] == 3  # two SlowDowns, then the object


def test_throttling_that_persists_ends_as_a_transient_error(fake_s3: FakeS3) -> None:
    fake_s3.failures = 100
    settings = Settings(s3_endpoint_url=fake_s3.url, fetch_attempts=2)
    with pytest.raises(TransientUriError, match=r"SlowDown \(HTTP 503\) .* after 2 attempts"):
        fetch_s3("s3://bucket/throttled.jpg", settings)
    assert fake_s3.hits["/bucket/throttled.jpg"] == 2


def test_access_denied_is_not_allowed_and_not_retried(fake_s3: FakeS3) -> None:
    settings = Settings(s3_endpoint_url=fake_s3.url, fetch_attempts=3)
    with pytest.raises(NotAllowed, match=r"S3 denied reading s3://bucket/denied.jpg"):
        fetch_s3("s3://bucket/denied.jpg", settings)
    assert fake_s3.hits["/bucket/denied.jpg"] == 1
