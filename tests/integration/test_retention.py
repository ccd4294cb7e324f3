"""Retention and schema commands against a real redis-server and the test's results
database: ``bulktag delete`` / ``prune`` / ``db upgrade``, and ``DELETE /jobs/{id}``
with and without ``purge=true``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from producer.api import create_api
from producer.cli import main
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.integration.test_api import LOCAL
from tests.servers import results_env

TOP3 = [Label("tabby", 281, 0.6), Label("tiger cat", 282, 0.2), Label("Egyptian cat", 285, 0.1)]


def finished_job(redis_url: str, job: str, n: int = 3, *, finish: bool = True) -> ResultStore:
    """A job of ``n`` URIs, every record written the way a worker writes it."""
    store = ResultStore(connect(redis_url))
    store.create_job(job, 2, "test")
    uris = [f"/photos/{job}/{i}.jpg" for i in range(n)]
    store.add_uris(job, 0, [uris])
    store.finish_enumeration(job)
    if finish:
        outs = [
            (i, Record(u, f"{i:064x}", "ok", None, TOP3, "m1"), False) for i, u in enumerate(uris)
        ]
        store.record_outcomes(job, outs)
        store.cache_top3(
            "m1", {f"{i:064x}": [{"label": "tabby", "index": 281, "score": 0.6}] for i in range(n)}
        )
    return store


def test_delete_removes_the_job_and_keeps_the_cache_unless_asked(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = finished_job(redis_url, "a")
    finished_job(redis_url, "b")
    assert main(["--redis-url", redis_url, "delete", "a"]) == 0
    assert capsys.readouterr().out.strip() == "deleted job a: 3 records"
    assert store.list_jobs() == ["b"] and len(store.cached_top3("m1", [f"{0:064x}"])) == 1
    # the cache entries b still references stay even with --cache
    assert main(["--redis-url", redis_url, "delete", "b", "--cache"]) == 0
    assert store.list_jobs() == [] and store.cached_top3("m1", [f"{0:064x}"]) == {}
    assert main(["--redis-url", redis_url, "delete", "a"]) == 1
    assert capsys.readouterr().err.strip() == "bulktag: error: no job named 'a'"


def test_delete_cancels_a_running_job_first(redis_url: str) -> None:
    store = finished_job(redis_url, "live", finish=False)
    assert main(["--redis-url", redis_url, "delete", "live"]) == 0
    assert store.job_state("live") is None


def test_prune_takes_finished_jobs_only(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = finished_job(redis_url, "old")
    finished_job(redis_url, "live", finish=False)
    assert main(["--redis-url", redis_url, "prune", "--older-than", "1"]) == 0
    assert set(store.list_jobs()) == {"live", "old"}  # finished less than a day ago
    assert main(["--redis-url", redis_url, "prune", "--older-than", "0", "--cache"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        out == "pruned 1 job(s) finished more than 0 day(s) ago, 3 cache entries no job references"
    )
    assert store.list_jobs() == ["live"]
    with pytest.raises(SystemExit):  # argparse: "must be >= 0"
        main(["--redis-url", redis_url, "prune", "--older-than", "-2"])


def test_db_upgrade_creates_then_reports_the_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'results.db'}"
    monkeypatch.setenv("BULKTAG_RESULTS_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip().endswith("schema upgraded from revision none to 0001")
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip().endswith("schema already at revision 0001")


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    env = {"BULKTAG_REDIS_URL": redis_url, "BULKTAG_ALLOWED_ROOTS": str(tmp_path), **results_env()}
    with TestClient(create_api(Settings.from_env(env)), base_url=LOCAL) as client:
        yield client


def test_plain_delete_cancels_and_purge_deletes(redis_url: str, api: TestClient) -> None:
    store = finished_job(redis_url, "keep", finish=False)
    finished_job(redis_url, "gone")
    # plain DELETE: cancel, the job and its records stay
    resp = api.delete("/jobs/keep")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    assert "purged" not in resp.json() and store.job_state("keep") == "cancelled"
    # purge=true: the job and its records are gone for good
    resp = api.delete("/jobs/gone", params={"purge": "true"})
    assert resp.status_code == 200 and resp.json()["purged"] is True
    assert resp.json()["state"] == "done" and resp.json()["ok"] == 3
    assert api.get("/jobs/gone").status_code == 404
    assert api.delete("/jobs/gone", params={"purge": "true"}).status_code == 404
