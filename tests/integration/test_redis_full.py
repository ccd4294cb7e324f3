"""A full Redis (``maxmemory`` + ``noeviction``, as compose runs it) refuses the producer's
writes: one clear line, and the job in the database holds exactly what was queued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producer.cli import main
from tasks.records import Record
from tasks.store import ResultStore
from tests.integration.test_producer_scale import messages, write_list
from tests.servers import RedisServer


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path / "redis", "--maxmemory", "3mb", "--maxmemory-policy", "noeviction"
    ).start()
    yield server
    server.stop()


def test_a_full_broker_stops_the_producer_with_one_line_and_loses_nothing(
    full_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 50,000 URIs: ~1,600 chunk messages, ~5 MB, more than Redis may hold
    uris = write_list(tmp_path / "uris.txt", 50_000)
    # When they are submitted
    code = main(
        ["--redis-url", full_redis.url, "submit", f"@{tmp_path / 'uris.txt'}", "--job", "f"]
    )
    # Then the producer stops with one line naming the cause
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line
    assert code == 1 and err.startswith(
        "bulktag: error: Redis refused the chunk messages (OutOfMemoryError: command not "
        "allowed when used memory > 'maxmemory'.) job f keeps the "
    ), err
    # ...the job counts the URIs queued before the refused batch, every one of them queued
    client = redis.Redis.from_url(full_redis.url, decode_responses=True)
    queued = [uri for args, _, _ in messages(client) for _, uri in args[1]]
    store = ResultStore(client)
    status = store.status("f")
    assert 0 < status.total <= len(queued) < len(uris)
    assert list(store.iter_uris("f")) == uris[: status.total] == queued[: status.total]
    assert status.submit_error and "OutOfMemoryError" in status.submit_error
    # ...and records of the refused batch's stray messages (beyond the cut) count nowhere
    for args, _, _ in messages(client):  # as workers would, one chunk at a time
        outcomes = [(i, Record(u, None, "error", "x", None, "m"), False) for i, u in args[1]]
        store.record_outcomes("f", outcomes)
    after = store.status("f")
    assert (after.error, after.pending, after.state) == (status.total, 0, "done")
