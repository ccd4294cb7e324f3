"""What `bulktag retry` puts on the real queue, and what it does to the job, before any worker."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis

from producer.resubmit import retry_job
from producer.submit import submit
from tasks import keys
from tasks.errors import ConfigError
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.store import ResultStore
from tests.servers import results_env

TOP3 = [Label("tench", 0, 0.5), Label("goldfish", 1, 0.3), Label("shark", 2, 0.1)]


def queued_chunks(client: redis.Redis) -> list[list[object]]:
    """The args of every chunk message waiting in the bulktag queue, oldest first."""
    messages = [json.loads(raw) for raw in client.lrange(keys.broker_queue("bulktag"), 0, -1)]
    args = [json.loads(base64.b64decode(m["body"]))[0] for m in messages]
    return list(reversed(args))


def test_retry_reopens_errors_and_requeues_pending_in_fresh_chunks(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a 6-URI job (no worker running): 0 ok, 1 and 4 errors, 2 ok, 3 and 5 pending
    folder = tmp_path / "f"
    folder.mkdir()
    for name in "abcdef":
        (folder / f"{name}.jpg").write_bytes(b"x")
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    job = submit(str(folder), job="r", chunk_size=3, settings=settings)
    store = ResultStore(redis_client)
    uris = [uri for _, uri, _ in store.records("r")]
    ok = [Record(u, "ab" * 32, "ok", None, TOP3, "m") for u in uris]
    err = [Record(u, None, "error", "corrupt", None, "m") for u in uris]
    store.record_outcomes("r", [(0, ok[0], False), (1, err[1], False), (2, ok[2], False)])
    store.record_outcomes("r", [(4, err[4], False)])
    redis_client.delete(keys.broker_queue("bulktag"))  # forget the original messages

    # When the errors and the pending URIs are retried in chunks of 2
    report = retry_job("r", errors=True, pending=True, chunk_size=2, settings=settings)

    # Then errors were reopened (pending again, un-counted) and everything went out once
    assert (report.round, report.errors, report.pending, report.chunks) == (1, 2, 2, 2)
    st = job.status()
    assert (st.state, st.ok, st.error, st.pending) == ("running", 2, 0, 4)
    chunks = queued_chunks(redis_client)
    assert [c[1] for c in chunks] == [[[1, uris[1]], [3, uris[3]]], [[4, uris[4]], [5, uris[5]]]]
    assert all(c[0] == "r" and c[2] == {"round": 1} for c in chunks)
    # ...ok records were not touched
    assert {i: rec for i, _, rec in store.records("r")}[0] == ok[0]

    # A second retry is round 2, and with --errors only there is nothing left to send
    again = retry_job("r", errors=True, settings=settings)
    assert (again.round, again.errors, again.chunks) == (2, 0, 0)
    with pytest.raises(ConfigError, match="nothing to retry"):
        retry_job("r", errors=False, pending=False, settings=settings)
