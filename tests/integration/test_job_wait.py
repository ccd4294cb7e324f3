"""Job.wait hears a job's end from Redis pub/sub instead of waiting out its poll."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from producer.job import Job
from producer.submit import submit
from tasks.records import Record
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.servers import results_env


@pytest.mark.parametrize("ending", ["last record", "cancel"])
def test_wait_returns_when_the_job_ends_not_at_the_next_poll(
    tmp_path: Path, redis_url: str, ending: str
) -> None:
    # Given a submitted 3-URI job with no worker, and a waiter polling every 30 s
    uris = [str(tmp_path / f"{i}.jpg") for i in range(3)]
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    job = submit("list", job=f"w-{ending[0]}", settings=settings, uris=uris)
    store = ResultStore(connect(redis_url))
    returned: dict[str, float] = {}

    def waiter() -> None:
        status = job.wait(poll=30.0, timeout=60)
        returned["at"] = time.monotonic()
        returned["state"] = status.state  # type: ignore[assignment]

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.5)  # the waiter is subscribed and into its long sleep
    assert thread.is_alive()

    # When the job ends
    ended_at = time.monotonic()
    if ending == "cancel":
        store.cancel_job(job.id)
    else:
        store.record_outcomes(
            job.id,
            [
                (i, Record(u, None, "error", "test: no such file", None, "m"), False)
                for i, u in enumerate(uris)
            ],
        )
    thread.join(10)

    # Then the waiter returned with the final state, within moments
    assert not thread.is_alive()
    assert returned["at"] - ended_at < 2.0
    assert returned["state"] == ("cancelled" if ending == "cancel" else "done")


def test_the_wait_between_polls_ends_when_the_job_ends(tmp_path: Path, redis_url: str) -> None:
    # The sleep between two progress reads is cut short by the job's end: a 30 s one
    # returns as soon as the job is cancelled 0.3 s in.
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    job = submit("list", job="cut", settings=settings, uris=[str(tmp_path / "a.jpg")])
    store = ResultStore(connect(redis_url))
    with job._finished_signal() as sleep:
        timer = threading.Timer(0.3, store.cancel_job, args=(job.id,))
        started = time.monotonic()
        timer.start()
        sleep(30.0)
        while time.monotonic() - started < 0.2:  # the subscribe confirmation came first
            sleep(30.0)
        slept = time.monotonic() - started
    timer.join()
    assert 0.25 < slept < 5.0


def test_wait_still_polls_without_pub_sub(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    def no_pubsub(self: object, *args: object, **kwargs: object) -> None:
        raise redis.ResponseError("unknown command 'SUBSCRIBE'")

    monkeypatch.setattr(redis.client.PubSub, "subscribe", no_pubsub)
    uris = [str(tmp_path / "a.jpg")]
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    job = submit("list", job="nopubsub", settings=settings, uris=uris)
    ResultStore(connect(redis_url)).cancel_job(job.id)
    assert Job.attach(job.id, settings).wait(poll=0.05, timeout=5).state == "cancelled"
