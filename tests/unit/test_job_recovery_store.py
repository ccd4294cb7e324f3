"""Retry and cancel in the store (fakeredis with Lua): records replaced, totals always right."""

from __future__ import annotations

from tasks.chunks import ChunkLedger, chunk_id
from tasks.store import ResultStore
from tests.unit.conftest import error_record, ok_record


def finished_job(store: ResultStore) -> None:
    """Job j: a ok, b error, c error, d ok; done."""
    store.create_job("j", 4, "src")
    store.add_uris("j", store.status("j").total, [["a", "b", "c", "d"]])
    store.finish_enumeration("j")
    store.record_outcomes(
        "j",
        [
            (0, ok_record("a"), False),
            (1, error_record("b", "corrupt or truncated image"), False),
            (2, error_record("c", "corrupt or truncated image"), False),
            (3, ok_record("d"), True),
        ],
    )


def counts(store: ResultStore) -> tuple[str, int, int, int, int]:
    st = store.status("j")
    return st.state, st.ok, st.error, st.pending, st.deduped


def test_reopening_errors_uncounts_them_and_reruns_the_job(store: ResultStore) -> None:
    finished_job(store)
    assert counts(store) == ("done", 2, 2, 0, 1)

    # When the two errors and an ok record are reopened for a retry
    assert store.reopen_errors("j", [1, 2, 0]) == 2

    # Then only the errors went back to pending, and the job runs again
    assert counts(store) == ("running", 2, 0, 2, 1)
    assert store.status("j").finished_at is None
    records = {i: rec for i, _, rec in store.records("j")}
    assert records[0] == ok_record("a") and records[1] is None and records[2] is None

    # When the retry writes the new outcomes (one now ok, one still an error)
    store.record_outcomes(
        "j",
        [(1, ok_record("b"), False), (2, error_record("c", "corrupt or truncated image"), False)],
    )
    # Then every URI holds one record and the totals add up to a finished job
    assert counts(store) == ("done", 3, 1, 0, 1)
    assert {i: rec for i, _, rec in store.records("j")}[1] == ok_record("b")


def test_reopen_is_idempotent_and_ignores_ok_and_missing(store: ResultStore) -> None:
    finished_job(store)
    assert store.reopen_errors("j", [1]) == 1
    assert store.reopen_errors("j", [1]) == 0  # already pending
    assert store.reopen_errors("j", [0, 3, 99]) == 0
    assert store.reopen_errors("j", []) == 0
    assert counts(store) == ("running", 2, 1, 1, 1)


def test_late_duplicate_after_reopen_still_counts_once(store: ResultStore) -> None:
    finished_job(store)
    store.reopen_errors("j", [1])
    # the retried chunk and a late copy of the original both write index 1
    store.record_outcomes("j", [(1, ok_record("b"), False)])
    store.record_outcomes("j", [(1, error_record("b", "corrupt or truncated image"), False)])
    assert counts(store) == ("done", 3, 1, 0, 1)
    assert {i: rec for i, _, rec in store.records("j")}[1] == ok_record("b")


def test_retry_rounds_are_numbered(store: ResultStore) -> None:
    finished_job(store)
    assert [store.begin_retry_round("j") for _ in range(3)] == [1, 2, 3]


def test_cancel_stops_a_running_job_but_not_a_finished_one(store: ResultStore) -> None:
    finished_job(store)
    assert store.cancel_job("j") == "done"
    assert store.status("j").state == "done"

    store.create_job("k", 2, "src")
    assert store.cancel_job("k") == "enumerating"
    assert store.status("k").state == "cancelled"
    assert store.cancel_job("k") == "cancelled"
    # a late chunk's records do not bring a cancelled job back to done
    store.add_uris("k", store.status("k").total, [["x"]])
    store.record_outcomes("k", [(0, ok_record("x"), False)])
    assert store.status("k").state == "cancelled"


def test_chunk_ids_are_stable_readable_and_distinct() -> None:
    assert chunk_id([0, 1, 2, 3]) == "0-3"
    assert chunk_id([5]) == "5-5"
    assert chunk_id([5], round_=2) == "5-5@r2"
    assert chunk_id([5], split=True) == "5-5/s"
    gappy = chunk_id([1, 4, 9])
    assert gappy.startswith("1-9#") and gappy == chunk_id([1, 4, 9])
    assert gappy != chunk_id([1, 5, 9])
    assert chunk_id([]) == "empty"


def test_ledger_counts_deliveries_and_tracks_in_flight(store: ResultStore) -> None:
    ledger = ChunkLedger(store.r)
    assert ledger.begin("j", "0-31", host="w@h", pid=11, uris=32) == 1
    assert ledger.begin("j", "0-31", host="w@h", pid=12, uris=32) == 2  # redelivered
    assert ledger.begin("j", "32-63", host="w@h", pid=11, uris=32) == 1
    flying = ledger.in_flight("j")
    assert [(e.chunk, e.pid) for e in flying] == [("0-31", 12), ("32-63", 11)]
    assert flying[0].age() >= 0
    ledger.end("j", "0-31")
    assert [e.chunk for e in ledger.in_flight("j")] == ["32-63"]
    assert ledger.deliveries("j") == {"0-31": 2, "32-63": 1}
    store.delete_job("j")
    assert ledger.deliveries("j") == {} and ledger.in_flight("j") == []
