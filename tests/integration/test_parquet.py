"""`bulktag results JOB --format parquet`: read back with pyarrow (and pandas, DuckDB)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from moto.server import ThreadedMotoServer

from producer.cli import main
from producer.parquet_export import write_parquet
from tasks.store import ResultStore
from tests.labelled_jobs import MODEL, error, ok, seed_job
from tests.servers import free_port


@pytest.fixture
def job(redis_url: str) -> str:
    store = ResultStore(redis.Redis.from_url(redis_url, decode_responses=True))
    seed_job(
        store,
        "trip",
        [
            ok("/p/cat.jpg", ("tabby", 281, 0.62), ("tiger cat", 282, 0.21), ("lynx", 287, 0.1)),
            error("/p/broken.jpg", "cannot decode: truncated"),
            ok("/p/doc.jpg", ("receipt", 2, 0.9), ("screenshot", 3, 0.1)),  # a 2-label model
        ],
    )
    return "trip"


def test_parquet_export_has_typed_flattened_columns(
    job: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trip.parquet"
    args = ["--redis-url", redis_url, "results", job, "--format", "parquet", "-o", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().err == f"wrote 3 records to {out}\n"
    table = pq.read_table(out)
    assert table.schema.names == [
        "uri", "sha256", "status", "error", "model",
        "label1", "label2", "label3", "index1", "index2", "index3", "score1", "score2", "score3",
    ]  # fmt: skip
    assert table.schema.field("index1").type == pa.int32()
    assert table.schema.field("score1").type == pa.float64()
    rows = table.to_pylist()
    assert rows[0] == {
        "uri": "/p/cat.jpg",
        "sha256": "ab" * 32,
        "status": "ok",
        "error": None,
        "model": MODEL,
        "label1": "tabby",
        "label2": "tiger cat",
        "label3": "lynx",
        "index1": 281,
        "index2": 282,
        "index3": 287,
        "score1": 0.62,
        "score2": 0.21,
        "score3": 0.1,
    }
    assert rows[1]["status"] == "error" and rows[1]["error"] == "cannot decode: truncated"
    assert rows[1]["label1"] is None and rows[1]["score1"] is None
    assert (rows[2]["label2"], rows[2]["label3"], rows[2]["index3"]) == ("screenshot", None, None)

    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(out)
    assert list(frame["uri"]) == ["/p/cat.jpg", "/p/broken.jpg", "/p/doc.jpg"]
    duckdb = pytest.importorskip("duckdb")
    hits = duckdb.sql(
        f"SELECT uri FROM read_parquet('{out}') WHERE label1 = 'tabby' AND score1 > 0.5"
    ).fetchall()
    assert hits == [("/p/cat.jpg",)]


def test_parquet_needs_an_output(
    job: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--redis-url", redis_url, "results", job, "--format", "parquet"]) == 1
    assert capsys.readouterr().err == (
        "bulktag: error: --format parquet needs -o FILE or -o s3://bucket/key\n"
    )


def synthetic(n: int) -> Iterator[dict[str, Any]]:
    top = [{"label": f"label {k}", "index": k, "score": 0.1} for k in range(3)]
    for i in range(n):
        yield {
            "uri": f"/archive/{i:09d}.jpg",
            "sha256": f"{i:064x}",
            "status": "ok",
            "error": None,
            "top3": top,
            "model": MODEL,
        }


def peak_memory(path: Path, rows: int, row_group_rows: int) -> int:
    """Peak traced allocation while writing ``rows`` synthetic records to ``path``."""
    tracemalloc.start()
    try:
        with open(path, "wb") as sink:
            assert write_parquet(synthetic(rows), sink, row_group_rows=row_group_rows) == rows
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_rows_are_streamed_in_row_groups_in_bounded_memory(tmp_path: Path) -> None:
    peak_memory(tmp_path / "warm.parquet", 100, 10)  # one-time imports and set-up
    # Given 20,000 records written in row groups of 2,000
    bounded = peak_memory(tmp_path / "groups.parquet", 20_000, 2_000)
    meta = pq.ParquetFile(tmp_path / "groups.parquet").metadata
    assert (meta.num_rows, meta.num_row_groups) == (20_000, 10)
    # Then memory holds one group, far less than the same rows gathered in one group
    whole = peak_memory(tmp_path / "one.parquet", 20_000, 20_000)
    assert bounded * 4 < whole, (bounded, whole)


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/bulktag-test-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/bulktag-test-aws-credentials",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield url
    server.stop()


def test_parquet_export_to_s3(
    job: str, redis_url: str, moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    client.create_bucket(Bucket="exports")
    dest = "s3://exports/jobs/trip.parquet"
    assert main(["--redis-url", redis_url, "results", job, "--format", "parquet", "-o", dest]) == 0
    obj = client.get_object(Bucket="exports", Key="jobs/trip.parquet")
    assert obj["ContentType"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(obj["Body"].read()))
    assert table.column("uri").to_pylist() == ["/p/cat.jpg", "/p/broken.jpg", "/p/doc.jpg"]
