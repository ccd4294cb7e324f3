"""Scheduled re-tagging with a real `bulktag beat`: only what is new is enqueued or forwarded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from PIL import Image

from producer.samples import build_corpus
from tasks import keys
from tasks.store import ResultStore
from tests.servers import BULKTAG, REPO, running_worker

pytestmark = pytest.mark.e2e


def forwarded(client: redis.Redis) -> int:
    return sum(int(client.hget(k, "forward_images") or 0) for k in client.smembers(keys.workers()))


def wait_for(what: str, check: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


class RunWatcher:
    """Collects each finished run of a schedule from its state hash in Redis."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.client = client
        self.key = keys.schedule_state(name)
        self.runs: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        state = self.client.hgetall(self.key)
        if state.get("last_listed") and (
            not self.runs or state["last_run_at"] != self.runs[-1]["last_run_at"]
        ):
            self.runs.append(state)
        return self.runs

    def wait_runs(self, count: int, timeout: float = 60) -> list[dict[str, str]]:
        wait_for(f"{count} runs", lambda: len(self.poll()) >= count, timeout)
        return self.runs


def job_done(client: redis.Redis, job: str) -> bool:
    return ResultStore(client).job_state(job) == "done"


def test_beat_retags_only_new_images(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a folder (8 photos, 2 of them byte-identical repeats, 1 broken file) and a
    # schedule that re-tags it every 2 seconds
    photos = tmp_path / "photos"
    corpus = build_corpus(photos, 8, sizes=[(320, 240)], repeat_fraction=0.25, broken=1)
    schedules = tmp_path / "schedules.toml"
    schedules.write_text(f'[schedules.photos]\nsource = "{photos}"\nevery = 2\nchunk_size = 3\n')
    env = {**worker_env, "BULKTAG_SCHEDULES": str(schedules)}
    listed = len(corpus.all)
    watcher = RunWatcher(redis_client, "photos")

    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        beat_log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
        beat = subprocess.Popen(
            [*BULKTAG, "beat", "--state", str(tmp_path / "beat-state")],
            cwd=REPO,
            env=env,
            stdout=beat_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # When beat fires the first run, everything is tagged
            first = watcher.wait_runs(1)[0]
            assert int(first["last_enqueued"]) == listed
            wait_for("first job", lambda: job_done(redis_client, first["last_job"]))
            assert forwarded(redis_client) == len(corpus.unique)

            # Then later runs over the unchanged folder enqueue nothing and forward nothing
            runs = watcher.wait_runs(4)
            quiet = runs[2:4]  # run 2 may still fold run 1; runs 3 and 4 are steady state
            assert [int(r["last_enqueued"]) for r in quiet] == [0, 0]
            assert all(int(r["last_unchanged"]) == listed for r in quiet)
            assert forwarded(redis_client) == len(corpus.unique)
            assert len(ResultStore(redis_client).list_jobs()) == 1  # no job at all for a quiet run

            # When one new image appears, the next run enqueues and forwards just that one
            new = photos / "new.jpg"
            Image.open(corpus.unique[0]).rotate(90, expand=True).save(new)
            changed = wait_for(
                "a run with the new image",
                lambda: next(
                    (r for r in watcher.poll() if r["last_job"] != first["last_job"]), None
                ),
            )
            assert isinstance(changed, dict)
            assert int(changed["last_enqueued"]) == 1
            assert int(changed["last_unchanged"]) == listed
            wait_for("second job", lambda: job_done(redis_client, changed["last_job"]))
            assert list(ResultStore(redis_client).iter_uris(changed["last_job"])) == [str(new)]
            assert forwarded(redis_client) == len(corpus.unique) + 1
        finally:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(20)
            beat_log.close()

    assert "Sending due task photos (bulktag.run_schedule)" in (tmp_path / "beat.log").read_text()
    listing = subprocess.run(
        [*BULKTAG, "schedule", "list", "--json"], cwd=REPO, env=env, capture_output=True, text=True
    )
    row = json.loads(listing.stdout)[0]
    assert row["name"] == "photos" and row["when"] == "every 2s"
    assert row["last_job"] == changed["last_job"]
    assert row["next_run"] and row["last_run"]
