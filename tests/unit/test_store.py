"""ResultStore accounting (in-memory SQLite results, fakeredis work): idempotent, adds up."""

from __future__ import annotations

import pytest

from tasks.errors import JobNotFound
from tasks.store import ResultStore
from tests.unit.conftest import error_record, ok_record


def enqueue(store: ResultStore, job: str, uris: list[str]) -> None:
    store.add_uris(job, store.status(job).total, [uris])


def test_counts_add_up_and_job_finishes(store: ResultStore) -> None:
    assert store.create_job("j", 2, "src")
    enqueue(store, "j", ["a", "b"])
    enqueue(store, "j", ["c"])
    store.finish_enumeration("j")
    store.record_outcomes("j", [(0, ok_record("a"), False), (1, error_record("b"), False)])
    st = store.status("j")
    assert (st.state, st.total, st.ok, st.error, st.pending) == ("running", 3, 1, 1, 1)
    store.record_outcomes("j", [(2, ok_record("c"), True)])
    st = store.status("j")
    assert (st.state, st.ok, st.error, st.deduped, st.pending) == ("done", 2, 1, 1, 0)
    assert st.finished_at is not None
    uris = [(i, u, r.status if r else None) for i, u, r in store.records("j")]
    assert uris == [(0, "a", "ok"), (1, "b", "error"), (2, "c", "ok")]


def test_redelivered_chunk_changes_nothing(store: ResultStore) -> None:
    store.create_job("j", 2, "src")
    enqueue(store, "j", ["a", "b"])
    store.finish_enumeration("j")
    outcomes = [(0, ok_record("a"), False), (1, ok_record("b"), True)]
    store.record_outcomes("j", outcomes)
    before = store.status("j")
    store.record_outcomes("j", outcomes)
    after = store.status("j")
    assert (after.ok, after.error, after.deduped) == (before.ok, before.error, before.deduped)


def test_same_uri_twice_in_a_job_gets_two_records(store: ResultStore) -> None:
    store.create_job("j", 2, "src")
    enqueue(store, "j", ["a", "a"])
    store.finish_enumeration("j")
    store.record_outcomes("j", [(0, ok_record("a"), False), (1, ok_record("a"), True)])
    assert store.status("j").state == "done"


def test_job_not_done_while_enumerating(store: ResultStore) -> None:
    store.create_job("j", 1, "src")
    enqueue(store, "j", ["a"])
    store.record_outcomes("j", [(0, ok_record("a"), False)])
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


def test_late_chunk_of_a_deleted_job_recreates_nothing(store: ResultStore) -> None:
    # Given a job deleted (e.g. its submission found nothing) while a chunk was running
    store.create_job("j", 1, "src")
    enqueue(store, "j", ["a"])
    store.delete_job("j")
    # When that chunk's records arrive
    store.record_outcomes("j", [(0, ok_record("a"), False)])
    # Then no partial job appears, and the id can be used afresh
    assert store.list_jobs() == []
    assert store.r.keys("bulktag:job:j*") == []
    assert store.create_job("j", 1, "src")
