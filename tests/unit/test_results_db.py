"""The SQL results store's contract, on a SQLite file (tests/integration re-runs it on
PostgreSQL): idempotent transactions, counts from inserted rows, label search from the
index, retention, schema revisions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tasks.errors import ConfigError, JobNotFound
from tasks.records import Label, Record
from tasks.results_db import ResultsDB
from tasks.results_db import engine as engines


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ResultsDB]:
    engine = engines.create_engine(f"sqlite:///{tmp_path / 'results.db'}")
    engines.ensure_schema(engine)
    yield ResultsDB(engine)
    engine.dispose()


def rec(uri: str, labels: list[tuple[int, float]] | None = None, model: str = "m1") -> Record:
    """An ok record with ``(class index, score)`` labels, or an error one without."""
    if labels is None:
        return Record(uri, None, "error", "not an image", None, model)
    top3 = [Label(f"class{i}", i, s) for i, s in labels]
    return Record(uri, f"{abs(hash(uri)):064x}"[:64], "ok", None, top3, model)


def new_job(db: ResultsDB, job: str, n: int, chunk: int = 10) -> list[str]:
    uris = [f"/photos/{job}/{i}.jpg" for i in range(n)]
    assert db.create_job(job, chunk, "test")
    db.add_uris(job, 0, [uris[i : i + chunk] for i in range(0, n, chunk)])
    db.finish_enumeration(job)
    return uris


def test_records_round_trip_in_the_v1_shape(db: ResultsDB) -> None:
    # Given a job of one ok and one error record with awkward floats and text
    uris = new_job(db, "j", 2)
    ok = rec(uris[0], [(281, 0.1 + 0.2), (282, 1e-9), (0, 0.0)])
    bad = Record(uris[1], "ff" * 32, "error", "décodage: ünreadable\n", None, "m1")
    # When they are written and read back
    assert db.record_outcomes("j", [(0, ok, False), (1, bad, False)])
    back = [r for _, _, r in db.records("j")]
    # Then they are exactly the records that went in (floats bit for bit)
    assert [r.to_dict() for r in back if r] == [ok.to_dict(), bad.to_dict()]


def test_duplicate_delivery_adds_nothing_and_counts_come_from_inserted_rows(
    db: ResultsDB,
) -> None:
    uris = new_job(db, "j", 4)
    first = [(0, rec(uris[0], [(1, 0.5)]), False), (1, rec(uris[1]), False)]
    db.record_outcomes("j", first)
    # a redelivered chunk overlapping the first, with different content for index 0
    again = [(0, rec(uris[0], [(9, 0.9)]), True), (2, rec(uris[2], [(1, 0.4)]), True)]
    db.record_outcomes("j", again)
    st = db.status("j")
    assert (st.ok, st.error, st.deduped, st.pending, st.state) == (2, 1, 1, 1, "running")
    assert next(db.search([1]))[2].top3 == [Label("class1", 1, 0.4)]  # newest first
    assert db.records_between("j", 0, 1)[0][2] == first[0][1]  # the first write won


def test_concurrent_overlapping_writers_leave_one_record_per_uri(db: ResultsDB) -> None:
    # Given a 300-URI job whose every chunk is delivered to three writers at once
    uris = new_job(db, "j", 300)
    chunks = [list(range(i, i + 10)) for i in range(0, 300, 10)]

    def writer(offset: int) -> None:
        for k in range(len(chunks)):
            chunk = chunks[(k + offset) % len(chunks)]
            outs = [
                (i, rec(uris[i], [(i % 7, 0.5)]) if i % 5 else rec(uris[i]), False) for i in chunk
            ]
            db.record_outcomes("j", outs)

    threads = [threading.Thread(target=writer, args=(n * 7,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then the counts add up to exactly one record per URI and the job is done
    st = db.status("j")
    assert (st.ok, st.error, st.pending, st.state) == (240, 60, 0, "done")
    assert sum(1 for _, _, r in db.records("j") if r is not None) == 300


def test_job_lifecycle_cancel_reopen_and_annotations(db: ResultsDB) -> None:
    uris = new_job(db, "j", 3)
    assert db.status("j").state == "running"
    assert db.record_outcomes("j", [(i, rec(u), False) for i, u in enumerate(uris)])
    assert db.status("j").state == "done"
    # reopening errors un-counts them and runs the job again
    assert db.reopen_errors("j", [0, 1, 7]) == 2
    st = db.status("j")
    assert (st.state, st.error, st.pending, st.finished_at) == ("running", 1, 2, None)
    assert db.begin_retry_round("j") == 1 and db.begin_retry_round("j") == 2
    db.annotate_job("j", model="m1", submit_error="disk")
    assert (db.job_field("j", "model"), db.status("j").submit_error) == ("m1", "disk")
    assert db.cancel_job("j") == "running" and db.cancel_job("j") == "cancelled"
    # a cancelled job's late chunk is stored but does not bring it back to done
    assert not db.record_outcomes("j", [(0, rec(uris[0]), False), (1, rec(uris[1]), False)])
    assert db.status("j").state == "cancelled"
    with pytest.raises(JobNotFound):
        db.cancel_job("nope")


def test_abort_enumeration_cuts_the_job_back_to_what_was_sent(db: ResultsDB) -> None:
    db.create_job("j", 2, "test")
    db.add_uris("j", 0, [["a", "b"], ["c", "d"]])
    db.abort_enumeration("j", 2, "I/O error")
    st = db.status("j")
    assert (st.total, st.state, st.submit_error) == (2, "running", "I/O error")
    assert list(db.iter_uris("j")) == ["a", "b"]
    assert db.job_uri("j", 1) == "b" and db.job_uri("j", 2) is None


def test_search_and_label_counts_follow_the_agreed_api(db: ResultsDB) -> None:
    # Given two jobs by two models; "tabby" is class 281
    a = new_job(db, "a", 3)
    db.record_outcomes(
        "a",
        [
            (0, rec(a[0], [(281, 0.6), (282, 0.2), (5, 0.1)]), False),
            (1, rec(a[1], [(7, 0.5), (281, 0.25), (5, 0.1)]), False),
            (2, rec(a[2]), False),
        ],
    )
    time.sleep(0.01)  # "newest first" is by write time
    b = new_job(db, "b", 2)
    db.record_outcomes(
        "b",
        [
            (0, rec(b[0], [(3, 0.7), (4, 0.2), (281, 0.05)], model="m2"), False),
            (1, rec(b[1], [(281, 0.9), (2, 0.05), (1, 0.01)], model="m2"), False),
        ],
    )

    def found(*args: object, **kw: object) -> list[tuple[str, int]]:
        return [(j, i) for j, i, _ in db.search(*args, **kw)]  # type: ignore[arg-type]

    assert found([281]) == [("b", 1), ("b", 0), ("a", 1), ("a", 0)]
    assert found([281], min_score=0.3) == [("b", 1), ("a", 0)]
    assert found([281], top1=True) == [("b", 1), ("a", 0)]
    assert found([281], job_id="a") == [("a", 1), ("a", 0)]
    assert found([281], model_id="m2", min_score=0.1) == [("b", 1)]
    assert found([281], limit=2, offset=1) == [("b", 0), ("a", 1)]
    assert found([7, 3]) == [("b", 0), ("a", 1)]
    assert found([]) == []
    assert db.label_counts()[281] == 4 and db.label_counts(job_id="a")[5] == 2
    assert db.label_counts(model_id="m2") == {3: 1, 4: 1, 281: 2, 2: 1, 1: 1}


def test_label_search_is_answered_from_the_index(db: ResultsDB) -> None:
    query = "EXPLAIN QUERY PLAN SELECT * FROM records WHERE index1 IN (281) AND score1 >= 0.3"
    with db.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(query))
    assert "USING INDEX ix_records_label1" in plan, plan


def test_delete_keeps_the_cache_unless_asked_and_prune_takes_old_jobs(db: ResultsDB) -> None:
    for job in ("old", "new"):
        uris = new_job(db, job, 1)
        r = rec(uris[0], [(1, 0.5)])
        db.record_outcomes(job, [(0, Record(r.uri, "aa" * 32, "ok", None, r.top3, "m1"), False)])
    db.cache_top3("m1", {"aa" * 32: [{"label": "class1", "index": 1, "score": 0.5}]})
    db.cache_top3("m1", {"bb" * 32: [{"label": "class2", "index": 2, "score": 0.5}]})
    # delete without --cache: the shared cache entry stays
    assert db.delete_job("new") and not db.delete_job("new")
    assert set(db.cached_top3("m1", ["aa" * 32, "bb" * 32])) == {"aa" * 32, "bb" * 32}
    # prune: only jobs finished before the cutoff; --cache drops unreferenced entries
    assert db.prune(3600, cache=True) == (0, 0)
    assert db.prune(-1, cache=True) == (1, 2)
    assert db.list_jobs() == [] and db.cached_top3("m1", ["aa" * 32, "bb" * 32]) == {}


def test_delete_with_cache_drops_only_entries_no_other_job_uses(db: ResultsDB) -> None:
    shared, own = "aa" * 32, "cc" * 32
    for job, digests in (("x", [shared, own]), ("y", [shared])):
        uris = new_job(db, job, len(digests))
        outs = [
            (i, Record(uris[i], d, "ok", None, [Label("c", 1, 0.5)], "m1"), False)
            for i, d in enumerate(digests)
        ]
        db.record_outcomes(job, outs)
    top = [{"label": "c", "index": 1, "score": 0.5}]
    db.cache_top3("m1", {shared: top, own: top})
    assert db.delete_job("x", cache=True)
    assert set(db.cached_top3("m1", [shared, own])) == {shared}


def test_schema_is_made_on_open_and_an_unknown_revision_is_one_clear_error(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = engines.create_engine(url)
    engines.ensure_schema(engine)
    assert engines.current_revision(engine) == engines.head_revision()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(ConfigError, match="revision ffff, which this bulktag does not know"):
        engines.ensure_schema(engine)
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///relative.db", "absolute path"),
        ("mysql://u@h/db", "expected sqlite:///ABSOLUTE/PATH.db or postgresql://"),
    ],
)
def test_bad_results_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engines.normalise_url(url)


def test_default_location_is_per_user_and_absolute() -> None:
    from tasks.settings import default_results_url, results_url_from_env

    assert default_results_url({"XDG_DATA_HOME": "/data"}) == "sqlite:////data/bulktag/results.db"
    assert default_results_url({}).endswith("/.local/share/bulktag/results.db")
    env = {"BULKTAG_RESULTS_URL": "postgresql://u@h/db"}
    assert results_url_from_env(env) == "postgresql://u@h/db"


def test_reprocess_versions_come_from_the_jobs_annotations(db: ResultsDB) -> None:
    # Given a root job re-tagged twice by model m2 and once by m3 (no Redis involved)
    new_job(db, "root", 1)
    for job, model in (("root.m2", "m2"), ("root.m3", "m3"), ("root.m2.3", "m2")):
        new_job(db, job, 1)
        db.annotate_job(job, reprocess_of="root", model=model)
        time.sleep(0.01)
    new_job(db, "other", 1)
    db.annotate_job("other", reprocess_of="elsewhere", model="m2")
    # Then each model maps to its newest reprocess job of that root
    assert db.reprocess_versions("root") == {"m2": "root.m2.3", "m3": "root.m3"}
    assert db.reprocess_versions("root.m2") == {}
