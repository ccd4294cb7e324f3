"""The chunk task under faults: Redis gone, poison chunks, cancelled jobs (no worker needed).

The task function runs in-process against fakeredis; the real-worker versions of these
faults are in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import signal
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import Reject

import tasks.tag as tag
from tasks import fault_injection, pipeline, poison, process
from tasks.chunks import ChunkLedger
from tasks.records import Record
from tasks.store import ResultStore
from tests.unit.conftest import memory_store


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> ResultStore:
    """A job "j" of three URIs in a fakeredis store, wired into the task module."""
    store = memory_store()
    store.create_job("j", 3, "src")
    store.add_uris("j", store.status("j").total, [["/d/a.jpg", "/d/b.jpg", "/d/c.jpg"]])
    store.finish_enumeration("j")
    monkeypatch.setattr(process, "store", lambda: store)
    monkeypatch.setattr(process, "ledger", lambda: ChunkLedger(store.r))
    monkeypatch.setattr(
        process, "tagger", lambda: SimpleNamespace(model_id="resnet18-test", forward_batches=0)
    )
    return store


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Messages the task publishes, captured instead of sent."""
    messages: list[dict[str, Any]] = []
    monkeypatch.setattr(tag.tag_chunk.app, "send_task", lambda name, **kw: messages.append(kw))
    return messages


ITEMS = [[0, "/d/a.jpg"], [1, "/d/b.jpg"], [2, "/d/c.jpg"]]


def records(store: ResultStore) -> dict[int, Any]:
    return {i: rec for i, _, rec in store.records("j")}


def test_redis_gone_through_retries_ends_uris_as_errors(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Redis failing every read of the chunk, even after the client's own retries
    def unreachable(*_: Any, **__: Any) -> Any:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(pipeline, "tag_items", unreachable)
    # When the chunk runs, and the store takes the final write
    summary = tag.tag_chunk("j", ITEMS, {})
    # Then no URI vanished: each ends as error with the reason, and the job is done
    assert summary["error"] == 3
    recs = records(store)
    assert all(
        r.status == "error" and "results store unreachable" in r.error for r in recs.values()
    )
    assert store.status("j").state == "done"


def test_redis_gone_for_the_final_write_too_requeues_the_chunk(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_: Any, **__: Any) -> Any:
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(pipeline, "tag_items", unreachable)
    monkeypatch.setattr(store, "record_outcomes", unreachable)
    with pytest.raises(Reject) as info:
        tag.tag_chunk("j", ITEMS, {})
    assert info.value.requeue is True  # back on the queue, not acked away
    assert store.status("j").pending == 3


def test_poison_chunk_is_split_uri_by_uri(store: ResultStore, sent: list[dict[str, Any]]) -> None:
    # Given a chunk whose last three deliveries never finished (the worker died each time)
    ledger = ChunkLedger(store.r)
    for _ in range(poison.MAX_DELIVERIES):
        ledger.begin("j", "0-2", host="w", pid=1, uris=3)
    # When it is delivered once more
    summary = tag.tag_chunk("j", ITEMS, {})
    # Then it does not run: each URI is re-enqueued alone, marked as split
    assert summary["poison"] == 3
    assert [m["args"][1] for m in sent] == [[item] for item in ITEMS]
    assert all(m["args"][2] == {"split": True} for m in sent)
    assert records(store) == {0: None, 1: None, 2: None}
    assert ledger.in_flight("j") == []


def test_poison_uri_alone_ends_as_error_with_the_reason(
    store: ResultStore, sent: list[dict[str, Any]]
) -> None:
    ledger = ChunkLedger(store.r)
    for _ in range(poison.MAX_DELIVERIES):
        ledger.begin("j", "1-1/s", host="w", pid=1, uris=1)
    tag.tag_chunk("j", [[1, "/d/b.jpg"]], {"split": True})
    rec = records(store)[1]
    assert rec.status == "error"
    assert rec.error.startswith(f"worker process died {poison.MAX_DELIVERIES} times")
    assert sent == []
    assert store.status("j").error == 1


def test_cancelled_or_deleted_job_chunks_are_skipped(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("a skipped chunk ran")

    monkeypatch.setattr(pipeline, "tag_items", must_not_run)
    store.cancel_job("j")
    assert tag.tag_chunk("j", ITEMS, {}) == {"job": "j", "skipped": 3}
    assert tag.tag_chunk("gone", ITEMS, {}) == {"job": "gone", "skipped": 3}
    assert ChunkLedger(store.r).deliveries("j") == {}


def test_a_done_jobs_late_duplicate_is_skipped_and_leaves_no_ledger(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the job done (every URI recorded) and its ledger set to expire
    outs = [(i, Record(u, None, "error", "gone", None, "m"), False) for i, u in ITEMS]
    store.record_outcomes("j", outs)
    assert store.status("j").state == "done"

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("a done job's chunk ran")

    monkeypatch.setattr(pipeline, "tag_items", must_not_run)
    # When a copy of one of its chunks arrives, it is skipped: no record, no Redis key
    assert tag.tag_chunk("j", ITEMS, {}) == {"job": "j", "skipped": 3}
    assert store.r.keys("bulktag:job:j:*") == []


def test_crash_hook_is_inert_unless_the_marker_matches_a_file_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(fault_injection.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    items = [(0, "/data/POISON-dir/ok.jpg"), (1, "/data/b.jpg")]
    fault_injection.crash_if_marked(items, None)
    fault_injection.crash_if_marked(items, "")
    fault_injection.crash_if_marked(items, "POISON")  # only in a folder name: no
    assert kills == []
    fault_injection.crash_if_marked([(2, "/data/x-POISON.jpg")], "POISON")
    assert [sig for _, sig in kills] == [signal.SIGKILL]


def test_poison_split_that_cannot_be_published_goes_back_whole(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.exceptions import OperationalError

    calls: list[object] = []

    def flaky_send(name: str, **kw: Any) -> None:
        calls.append(kw)
        if len(calls) == 2:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(tag.tag_chunk.app, "send_task", flaky_send)
    ledger = ChunkLedger(store.r)
    for _ in range(poison.MAX_DELIVERIES):
        ledger.begin("j", "0-2", host="w", pid=1, uris=3)
    with pytest.raises(Reject) as info:
        tag.tag_chunk("j", ITEMS, {})
    # the chunk is requeued whole (copies already sent are harmless duplicates)
    assert info.value.requeue is True
    assert records(store) == {0: None, 1: None, 2: None}
