"""ResultStore accounting on fakeredis (with Lua): idempotent, per-URI, adds up."""

from __future__ import annotations

import fakeredis
import pytest

from tasks.errors import JobNotFound
from tasks.records import Label, Record
from tasks.store import ResultStore

TOP3 = [Label("tench", 0, 0.5), Label("goldfish", 1, 0.3), Label("shark", 2, 0.1)]


@pytest.fixture
def store() -> ResultStore:
    return ResultStore(fakeredis.FakeRedis(decode_responses=True))


def ok(uri: str) -> Record:
    return Record(uri, "ab" * 32, "ok", None, TOP3, "resnet18-x")


def err(uri: str) -> Record:
    return Record(uri, None, "error", "no such file", None, "resnet18-x")


def enqueue(store: ResultStore, job: str, uris: list[str]) -> None:
    pipe = store.r.pipeline()
    store.add_chunk(pipe, job, uris)
    pipe.execute()


def test_counts_add_up_and_job_finishes(store: ResultStore) -> None:
    assert store.create_job("j", 2, "src")
    enqueue(store, "j", ["a", "b"])
    enqueue(store, "j", ["c"])
    store.finish_enumeration("j")
    store.record_outcomes("j", [(0, ok("a"), False), (1, err("b"), False)])
    st = store.status("j")
    assert (st.state, st.total, st.ok, st.error, st.pending) == ("running", 3, 1, 1, 1)
    store.record_outcomes("j", [(2, ok("c"), True)])
    st = store.status("j")
    assert (st.state, st.ok, st.error, st.deduped, st.pending) == ("done", 2, 1, 1, 0)
    assert st.finished_at is not None
    uris = [(i, u, r.status if r else None) for i, u, r in store.records("j")]
    assert uris == [(0, "a", "ok"), (1, "b", "error"), (2, "c", "ok")]


def test_redelivered_chunk_changes_nothing(store: ResultStore) -> None:
    store.create_job("j", 2, "src")
    enqueue(store, "j", ["a", "b"])
    store.finish_enumeration("j")
    outcomes = [(0, ok("a"), False), (1, ok("b"), True)]
    store.record_outcomes("j", outcomes)
    before = store.status("j")
    store.record_outcomes("j", outcomes)
    after = store.status("j")
    assert (after.ok, after.error, after.deduped) == (before.ok, before.error, before.deduped)


def test_same_uri_twice_in_a_job_gets_two_records(store: ResultStore) -> None:
    store.create_job("j", 2, "src")
    enqueue(store, "j", ["a", "a"])
    store.finish_enumeration("j")
    store.record_outcomes("j", [(0, ok("a"), False), (1, ok("a"), True)])
    assert store.status("j").state == "done"


def test_job_not_done_while_enumerating(store: ResultStore) -> None:
    store.create_job("j", 1, "src")
    enqueue(store, "j", ["a"])
    store.record_outcomes("j", [(0, ok("a"), False)])
    assert store.status("j").state == "enumerating"  # more chunks may follow
    store.finish_enumeration("j")  # all already done: finishing enumeration ends the job
    assert store.status("j").state == "done"


def test_duplicate_job_id_and_missing_job(store: ResultStore) -> None:
    assert store.create_job("j", 1, "src")
    assert not store.create_job("j", 1, "src")
    with pytest.raises(JobNotFound):
        store.status("nope")


def test_result_cache_is_per_model(store: ResultStore) -> None:
    top = [{"label": "tench", "index": 0, "score": 0.5}]
    store.cache_top3("m1", {"h1": top})
    assert store.cached_top3("m1", ["h1", "h2"]) == {"h1": top}
    assert store.cached_top3("m2", ["h1"]) == {}
