"""The results store's contract on a real PostgreSQL (a private server on a free port,
tests/postgres.py): the SQLite contract tests re-run here, plus what only a server has,
a restart under load and a connection that cannot be made."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tasks.errors import ConfigError, StoreUnavailable
from tasks.results_db import ResultsDB
from tasks.results_db import engine as engines
from tests.postgres import PostgresServer
from tests.servers import free_port

# The dialect-neutral contract, collected again in this module with the fixture below.
from tests.unit.test_results_db import (  # noqa: F401
    new_job,
    rec,
    test_abort_enumeration_cuts_the_job_back_to_what_was_sent,
    test_concurrent_overlapping_writers_leave_one_record_per_uri,
    test_delete_keeps_the_cache_unless_asked_and_prune_takes_old_jobs,
    test_delete_with_cache_drops_only_entries_no_other_job_uses,
    test_duplicate_delivery_adds_nothing_and_counts_come_from_inserted_rows,
    test_job_lifecycle_cancel_reopen_and_annotations,
    test_records_round_trip_in_the_v1_shape,
    test_search_and_label_counts_follow_the_agreed_api,
)


@pytest.fixture
def db(postgres_url: str) -> Iterator[ResultsDB]:
    engine = engines.create_engine(postgres_url)
    engines.ensure_schema(engine)
    yield ResultsDB(engine)
    engine.dispose()


def test_label_search_is_answered_from_the_index(db: ResultsDB) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # the table is tiny here
        plan = " ".join(
            row[0]
            for row in conn.exec_driver_sql(
                "EXPLAIN SELECT * FROM records WHERE index1 IN (281) AND score1 >= 0.3"
            )
        )
    assert "ix_records_label1" in plan, plan


def test_unknown_revision_is_one_clear_error(db: ResultsDB) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(ConfigError, match="revision ffff, which this bulktag does not know"):
        engines.ensure_schema(db.engine)


def test_unreachable_server_is_one_clear_line() -> None:
    url = f"postgresql://bulktag@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreUnavailable) as caught:
        ResultsDB.open(url)
    assert str(caught.value).startswith("cannot open the results database postgresql")


def test_writes_ride_out_a_server_restart_and_still_add_up(
    db: ResultsDB, postgres_server: PostgresServer
) -> None:
    # Given a job being written by two threads
    uris = new_job(db, "j", 400)
    restarted = threading.Event()

    def writer(first: int) -> None:
        for start in range(first, 400, 20):
            outs = [(i, rec(uris[i], [(i % 9, 0.5)]), False) for i in range(start, start + 10)]
            db.record_outcomes("j", outs)
            db.record_outcomes("j", outs)  # a duplicate delivery of each chunk, too
            if start >= 200:
                restarted.wait(30)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 10)]
    for t in threads:
        t.start()
    # When the server is stopped abruptly mid-job and back 2 s later
    postgres_server.restart(down_for=2.0)
    restarted.set()
    for t in threads:
        t.join(120)
    # Then every URI holds one record and the counts add up
    st = db.status("j")
    assert (st.ok, st.error, st.pending, st.state) == (400, 0, 0, "done")
    assert sum(1 for _, _, r in db.records("j") if r is not None) == 400
