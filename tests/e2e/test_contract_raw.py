"""docs/TASK_CONTRACT.md, followed by a client that imports no bulktag (and no Celery).

The "client" below writes the job rows of §3 with plain SQL (the test's SQLite results
database, through the sqlite3 module) and pushes a hand-built Celery protocol-2 message
(§2, with the Redis wrapper kombu expects) onto the queue; a real `bulktag worker` must
tag it and write the records of §4. A second
message that breaks the contract is rejected without harming the worker.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from tests.reference import load_reference_model, reference_top3
from tests.servers import running_worker

pytestmark = pytest.mark.e2e


def raw_message(task: str, args: list[object], queue: str) -> str:
    """One message exactly as kombu's Redis transport stores it (LPUSH onto the queue)."""
    task_id = str(uuid.uuid4())
    body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                "argsrepr": "raw",
                "kwargsrepr": "{}",
                "origin": "hand-built",
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def database(results_url: str) -> sqlite3.Connection:
    """The results database as a non-Python client would open it (here: sqlite3)."""
    db = sqlite3.connect(results_url.removeprefix("sqlite:///"), isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 30000")
    return db


def write_job(db: sqlite3.Connection, job: str, uris: list[str]) -> None:
    """§3: create the job, book its one chunk, end enumeration (no records exist yet)."""
    created = db.execute(
        "INSERT INTO jobs (job_id, state, chunk_size, created_at, source) "
        "VALUES (?, 'enumerating', ?, ?, 'hand-built contract client') "
        "ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
        (job, len(uris), time.time()),
    ).fetchall()
    assert created, "the job id exists"
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO job_uris (job_id, idx, uri) VALUES (?, ?, ?)",
        [(job, i, uri) for i, uri in enumerate(uris)],
    )
    db.execute(
        "UPDATE jobs SET total = total + ?, chunks = chunks + 1 WHERE job_id = ?", (len(uris), job)
    )
    db.execute("COMMIT")
    # End of enumeration: no worker has seen a message yet, so "running" is the answer.
    db.execute(
        "UPDATE jobs SET state = 'running' WHERE job_id = ? AND state = 'enumerating'", (job,)
    )


def test_a_hand_built_message_is_tagged_like_bulktag_own(
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    dev_weights: Path,
    results_url: str,
) -> None:
    # Given two photos and a job written key by key as the contract says
    photos = []
    for i, colour in enumerate([(200, 30, 30), (20, 160, 220)]):
        path = tmp_path / f"photo{i}.png"
        Image.new("RGB", (320, 240), colour).save(path)
        photos.append(path)
    from tasks.results_db import ResultsDB

    ResultsDB.open(results_url)  # the schema (bulktag db upgrade), as an operator would make it
    db = database(results_url)
    write_job(db, "raw-1", [str(p) for p in photos])
    items = [[i, str(p)] for i, p in enumerate(photos)]

    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1):
        # When a malformed message and then a good one arrive on the queue
        bad = raw_message("bulktag.tag_chunk", ["raw-1", [["zero", 5]], {}], "bulktag")
        good = raw_message("bulktag.tag_chunk", ["raw-1", items, {}], "bulktag")
        redis_client.lpush("bulktag", bad)
        redis_client.lpush("bulktag", good)
        deadline = time.monotonic() + 60
        state = "SELECT state FROM jobs WHERE job_id = 'raw-1'"
        while db.execute(state).fetchone()["state"] != "done":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.1)

    # Then each URI has the record of §4, agreeing with the plain torchvision pipeline
    model = load_reference_model(dev_weights)
    for index, path in enumerate(photos):
        record = db.execute(
            "SELECT * FROM records WHERE job_id = 'raw-1' AND idx = ?", (index,)
        ).fetchone()
        assert (record["uri"], record["status"], record["error"]) == (str(path), "ok", None)
        indices, scores = reference_top3(model, path)
        assert [record[f"index{n}"] for n in (1, 2, 3)] == indices
        assert [record[f"score{n}"] for n in (1, 2, 3)] == pytest.approx(scores, abs=1e-4)
        assert record["model"].startswith("resnet18-")
    status = db.execute("SELECT total, ok, error FROM jobs WHERE job_id = 'raw-1'").fetchone()
    assert tuple(status) == (2, 2, 0)
    # and the malformed message was refused with the reason in the worker's log
    log = (tmp_path / "worker.log").read_text()
    assert "rejected a malformed tag_chunk message: bad item ['zero', 5]" in log


def test_malformed_wrappers_are_refused_without_dropping_the_connection(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, results_url: str
) -> None:
    # Given a job of two photos written as the contract says
    photos = []
    for i in range(2):
        path = tmp_path / f"photo{i}.png"
        Image.new("RGB", (320, 240), (40 * i, 90, 200)).save(path)
        photos.append(path)
    from tasks.results_db import ResultsDB

    ResultsDB.open(results_url)  # the schema (bulktag db upgrade), as an operator would make it
    db = database(results_url)
    write_job(db, "raw-2", [str(p) for p in photos])
    job_row = "SELECT state, total, ok, error FROM jobs WHERE job_id = 'raw-2'"
    items = [[i, str(p)] for i, p in enumerate(photos)]
    good = json.loads(raw_message("bulktag.tag_chunk", ["raw-2", items, {}], "bulktag"))

    def broken(change: Any) -> str:
        message = json.loads(json.dumps(good))
        change(message)
        return json.dumps(message)

    malformed = {
        "no delivery_tag": broken(lambda m: m["properties"].pop("delivery_tag")),
        "bad base64": broken(lambda m: m.update(body="not*base64*at-all!")),
        "wrapper not JSON": '{"body": "eyJ", "properties": {"delivery_tag": ',
        "body not JSON": broken(lambda m: m.update(body=base64.b64encode(b"[[1, {oops").decode())),
        "no properties": broken(lambda m: m.pop("properties")),
        "no delivery_info": broken(lambda m: m["properties"].pop("delivery_info")),
        "a JSON list": "[1, 2, 3]",
    }

    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1) as worker:
        assert worker.proc is not None
        pool_before = set(redis_client.smembers("bulktag:workers"))
        # When each malformed message, then a good chunk, is LPUSHed onto the queue
        for raw in malformed.values():
            redis_client.lpush("bulktag", raw)
        redis_client.lpush("bulktag", json.dumps(good))
        deadline = time.monotonic() + 60
        while db.execute(job_row).fetchone()["state"] != "done":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.1)
        # Then the good chunk is tagged by the same worker and the same pool process
        assert worker.proc.poll() is None
        assert set(redis_client.smembers("bulktag:workers")) == pool_before
        assert tuple(db.execute(job_row).fetchone())[1:] == (2, 2, 0)
        # and nothing is stranded: the queue is empty, nothing is left un-acked
        assert redis_client.llen("bulktag") == 0
        assert redis_client.hlen("unacked") == 0

    # And each refusal is in the log with its reason, with no broker reconnect
    log = (tmp_path / "worker.log").read_text()
    for reason in (
        "no properties.delivery_tag",
        "'body' is not valid base64",
        "rejected a malformed broker message: not JSON",
        "no 'properties' object",
        "no properties.delivery_info",
        "the wrapper is a JSON list, not an object",
    ):
        assert reason in log, reason
    assert "Can't decode message body" in log  # Celery's own refusal of a bad task body
    assert "Connection to broker lost" not in log
    assert "Unrecoverable error" not in log
