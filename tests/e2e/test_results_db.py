"""Results in the database, end to end: real workers writing to a private PostgreSQL
(and the default SQLite), faults on both, and Redis flushed after a job ends.

``status``, ``results`` and a re-submit's dedupe must then be complete from the
database alone. The ``RELIABILITY`` lines (``pytest -s``) are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.e2e import test_faults
from tests.e2e.test_faults import fault_env, small_photos
from tests.invariants import audit_job, cli, done_count, is_done, snapshot, wait_for
from tests.postgres import PostgresServer
from tests.servers import running_worker

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
]  # two workers + PostgreSQL on a busy CI box


def job_keys(client: redis.Redis, job: str) -> dict[str, int]:
    """Every Redis key naming ``job``, with its TTL (-1: none)."""
    return {k: int(client.ttl(k)) for k in client.scan_iter(f"*{job}*")}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_finished_job_needs_nothing_from_redis(
    backend: str,
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env = dict(worker_env)
    if backend == "postgres":
        env["BULKTAG_RESULTS_URL"] = request.getfixturevalue("postgres_url")
    # Given a 30-photo job tagged to the end
    uris = small_photos(tmp_path / "photos", 30)
    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        cli(env, "submit", str(tmp_path / "photos"), "--job", "first", "--chunk-size", "8")
        wait_for("the job to finish", lambda: is_done(redis_client, "first"), 180)
        before = cli(env, "results", "first").stdout
        # Then Redis keeps nothing of it but the chunk ledger, expiring
        left = job_keys(redis_client, "first")
        assert all(0 < ttl <= 600 for ttl in left.values()), left

        # When Redis loses everything (FLUSHALL: a new, empty Redis)
        redis_client.flushall()

        # Then status and results come whole from the database
        status = json.loads(cli(env, "status", "first", "--json").stdout)
        assert (status["state"], status["ok"], status["pending"]) == ("done", 30, 0)
        assert cli(env, "results", "first").stdout == before
        assert len(before.splitlines()) == len(uris)

        # ...and a re-submit of the same photos is answered from the dedupe cache alone
        cli(env, "submit", str(tmp_path / "photos"), "--job", "again", "--chunk-size", "8")
        wait_for("the re-run", lambda: is_done(redis_client, "again"), 180)
    again = json.loads(cli(env, "status", "again", "--json").stdout)
    assert (again["ok"], again["deduped"]) == (30, 30)
    firsts = {json.loads(line)["uri"]: json.loads(line)["top3"] for line in before.splitlines()}
    for line in cli(env, "results", "again").stdout.splitlines():
        rec = json.loads(line)
        assert rec["top3"] == firsts[rec["uri"]]


def test_worker_killed_mid_job_on_postgres_loses_nothing(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, postgres_url: str
) -> None:
    test_faults.test_worker_killed_mid_job_then_replaced_loses_nothing(
        {**worker_env, "BULKTAG_RESULTS_URL": postgres_url}, redis_client, tmp_path
    )


def test_postgres_restarted_mid_job_loses_nothing(
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    postgres_url: str,
    postgres_server: PostgresServer,
) -> None:
    # Given a 300-photo job running against PostgreSQL
    env = fault_env({**worker_env, "BULKTAG_RESULTS_URL": postgres_url})
    uris = small_photos(tmp_path / "photos", 300)
    with running_worker(env, tmp_path / "worker.log", redis_client, 1) as worker:
        cli(env, "submit", str(tmp_path / "photos"), "--job", "pg", "--chunk-size", "10")
        wait_for("90 results", lambda: done_count(redis_client, "pg") >= 90, 120)
        seen = [snapshot(redis_client, "pg")]

        # When the server stops abruptly (no checkpoint) and is back 2 s later
        postgres_server.restart(down_for=2.0)
        at_restart = done_count(redis_client, "pg")
        assert at_restart < 300, "the job finished before the fault"

        # Then the same worker carries on and the job completes
        wait_for("the job to finish", lambda: is_done(redis_client, "pg"), 180)
        assert worker.proc is not None and worker.proc.poll() is None

    audit = audit_job(redis_client, "pg", uris, seen)
    assert (audit.ok, audit.error) == (300, 0)
    print(audit.line("postgres stop -m immediate + restart"), f"done_at_restart={at_restart}")
