"""Incremental runs over an S3 prefix decide from the listing's ETags: no download needed.

moto's real S3 HTTP API, real boto3 and a real redis-server; the job's records are
written directly (as a worker would) so the test needs no model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from producer.incremental import fingerprinted, run_incremental
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.servers import free_port

TOP3 = [Label("tench", 0, 0.5), Label("goldfish", 1, 0.3), Label("shark", 2, 0.1)]


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/bulktag-test-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/bulktag-test-aws-creds")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.session.Session().client("s3", endpoint_url=url)
    client.create_bucket(Bucket="photos")
    yield url, client
    server.stop()


def tag_everything(store: ResultStore, job: str, model: str) -> None:
    """Write an ok record for every URI of ``job``, as a worker with ``model`` would."""
    uris = list(store.iter_uris(job))
    outcomes = [
        (i, Record(u, "ab" * 32, "ok", None, TOP3, model), False) for i, u in enumerate(uris)
    ]
    store.record_outcomes(job, outcomes)


def test_unchanged_objects_are_skipped_by_etag_and_an_overwrite_is_picked_up(
    bucket: tuple[str, Any], redis_url: str
) -> None:
    endpoint, client = bucket
    for name in ("a", "b", "c"):
        client.put_object(Bucket="photos", Key=f"in/{name}.jpg", Body=name.encode() * 100)
    client.put_object(Bucket="photos", Key="in/readme.txt", Body=b"not an image")
    settings = Settings(redis_url=redis_url, s3_endpoint_url=endpoint)
    store = ResultStore(connect(redis_url))

    pairs = list(fingerprinted(["s3://photos/in/"], settings))
    assert [u for u, _ in pairs] == [f"s3://photos/in/{n}.jpg" for n in "abc"]
    assert all(fp and fp.startswith("etag:") for _, fp in pairs)

    # First run: everything is new
    first = run_incremental("inbox", ["s3://photos/in/"], settings=settings, model="m1")
    assert (first.listed, first.enqueued, first.unchanged) == (3, 3, 0)
    assert first.job is not None
    tag_everything(store, first.job, "m1")

    # Second run: the job is folded in, nothing changed -> no job at all
    second = run_incremental("inbox", ["s3://photos/in/"], settings=settings, model="m1")
    assert (second.folded, second.enqueued, second.unchanged, second.job) == (3, 0, 3, None)

    # An overwritten object has a new ETag: only it is enqueued
    client.put_object(Bucket="photos", Key="in/b.jpg", Body=b"changed" * 50)
    third = run_incremental("inbox", ["s3://photos/in/"], settings=settings, model="m1")
    assert (third.enqueued, third.unchanged) == (1, 2)
    assert third.job is not None
    assert list(store.iter_uris(third.job)) == ["s3://photos/in/b.jpg"]

    # While that job is unfinished, the next run is skipped rather than piling up
    fourth = run_incremental("inbox", ["s3://photos/in/"], settings=settings, model="m1")
    assert fourth.skipped and "still running" in fourth.skipped
    tag_everything(store, third.job, "m1")

    # A new model makes every object due again
    fifth = run_incremental("inbox", ["s3://photos/in/"], settings=settings, model="m2")
    assert (fifth.enqueued, fifth.unchanged) == (3, 0)
