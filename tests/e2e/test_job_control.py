"""Operating a job through the CLI on real processes: status verdicts, retry, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tasks import keys
from tests.invariants import audit_job, cli, done_count, is_done, snapshot, wait_for
from tests.servers import running_worker

pytestmark = pytest.mark.e2e


def env_for(worker_env: dict[str, str]) -> dict[str, str]:
    return {**worker_env, "BULKTAG_METRICS_PORT": "0"}


def health(env: dict[str, str], job: str, stall_after: float = 0.5) -> dict[str, object]:
    out = cli(env, "status", job, "--json", "--stall-after", str(stall_after)).stdout
    return json.loads(out)["health"]  # type: ignore[no-any-return]


def test_status_tells_waiting_slow_and_cancelled_apart_and_cancel_skips_the_rest(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = env_for(worker_env)
    build_corpus(tmp_path / "big", 300, sizes=[(160, 120)], repeat_fraction=0.0, seed=1)
    build_corpus(tmp_path / "many", 300, sizes=[(160, 120)], repeat_fraction=0.0, seed=2)

    # Given a job submitted while no worker runs: stuck, and the reason says why
    cli(env, "submit", str(tmp_path / "big"), "--job", "slow", "--chunk-size", "300")
    idle = health(env, "slow", stall_after=0)
    assert idle["verdict"] == "stuck" and "no worker answers" in str(idle["detail"])

    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        # When a worker takes its one 300-image chunk: no result for a while, yet it runs
        verdict = wait_for(
            "a slow verdict",
            lambda: (h := health(env, "slow"))["verdict"] in ("slow", "done") and h["verdict"],
            60,
        )
        assert verdict == "slow"
        wait_for("the slow job", lambda: is_done(redis_client, "slow"), 120)
        assert health(env, "slow")["verdict"] == "done"

        # When a 30-chunk job is cancelled part-way
        cli(env, "submit", str(tmp_path / "many"), "--job", "cx", "--chunk-size", "10")
        wait_for("60 results", lambda: done_count(redis_client, "cx") >= 60, 60)
        out = cli(env, "cancel", "cx").stdout
        assert "cancelled: chunks not yet started are skipped" in out
        # Then the queue drains without tagging the rest, and nothing is left half-done
        wait_for(
            "the queue to drain",
            lambda: (
                redis_client.llen(keys.broker_queue("bulktag")) == 0
                and redis_client.hlen(keys.broker_unacked()) == 0
            ),
            60,
        )
        st = json.loads(cli(env, "status", "cx", "--json").stdout)
        assert st["state"] == "cancelled" and st["health"]["verdict"] == "cancelled"
        assert 60 <= st["ok"] < 300 and st["ok"] + st["error"] == len(snapshot(redis_client, "cx"))
        assert redis_client.hlen(keys.job_in_flight("cx")) == 0
        assert "already cancelled" in cli(env, "cancel", "cx").stdout
        assert "already done" in cli(env, "cancel", "slow").stdout
        refused = cli(env, "retry", "cx", "--errors", check=False)
        assert refused.returncode == 1 and "was cancelled" in refused.stderr

    log = (tmp_path / "worker.log").read_text()
    skipped = log.count("job cx cancelled: skipping chunk")
    assert skipped >= 1
    print(f"RELIABILITY cancel: ok={st['ok']} pending={st['pending']} chunks_skipped={skipped}")


def test_retry_errors_replaces_error_records_and_keeps_totals_right(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a job where three photos were still being copied (truncated) and one is text
    env = env_for(worker_env)
    folder = tmp_path / "photos"
    corpus = build_corpus(folder, 11, sizes=[(160, 120)], repeat_fraction=0.0)
    uploading = corpus.all[:3]
    complete = {p: p.read_bytes() for p in uploading}
    for path, data in complete.items():
        path.write_bytes(data[: len(data) // 3])
    (folder / "notes.jpg").write_text("not a photo\n")
    uris = [str(p) for p in corpus.all] + [str(folder / "notes.jpg")]

    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        cli(env, "submit", str(folder), "--job", "up", "--chunk-size", "5", "--wait")
        first = json.loads(cli(env, "status", "up", "--json").stdout)
        assert (first["ok"], first["error"], first["state"]) == (8, 4, "done")
        before = snapshot(redis_client, "up")
        oks_before = {i: raw for i, raw in before.items() if '"status": "ok"' in raw}

        # When the copies finish and the job's errors are retried
        for path, data in complete.items():
            path.write_bytes(data)
        out = cli(env, "retry", "up", "--errors", "--wait").stdout
        assert "retry round 1: 4 error records reopened, 0 pending URIs re-enqueued" in out

        # Then the three are tagged, the text file is still an error, the totals add up
        after = json.loads(cli(env, "status", "up", "--json").stdout)
        assert (after["total"], after["ok"], after["error"], after["pending"]) == (12, 11, 1, 0)
        assert after["state"] == "done"
        lines = cli(env, "results", "up").stdout.splitlines()
        records = {rec["uri"]: rec for rec in map(json.loads, lines)}
        assert all(records[str(p)]["status"] == "ok" for p in uploading)
        assert records[str(folder / "notes.jpg")]["status"] == "error"
        # ...and records that were already final did not change
        audit = audit_job(redis_client, "up", uris, [oks_before])
        assert (audit.ok, audit.error) == (11, 1)
        print(audit.line("retry --errors"), "errors_before=4")

        # A second retry reruns only what is still failing, and changes nothing else
        again = cli(env, "retry", "up", "--errors", "--wait").stdout
        assert "retry round 2: 1 error records reopened" in again
        audit = audit_job(redis_client, "up", uris, [oks_before])
        assert (audit.ok, audit.error) == (11, 1)
