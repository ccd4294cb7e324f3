"""CLI errors that need a reachable Redis to get past the connection check."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.cli import main
from tasks.store import ResultStore
from tests.servers import results_env


def test_missing_source_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    assert main(["--redis-url", redis_url, "submit", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bulktag: error: no such file or directory") and "\n" not in err


def test_existing_job_id_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["--redis-url", redis_url, "submit", str(tmp_path), "--job", "j"]) == 0
    assert main(["--redis-url", redis_url, "submit", str(tmp_path), "--job", "j"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_submission_that_fails_midway_keeps_what_was_sent_and_can_finish(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer.job import Job
    from producer.submit import submit as submit_fn
    from tasks.records import Record
    from tasks.settings import Settings

    # Given a URI stream that breaks after 5 URIs (a list file on a dying disk, say)
    def flaky() -> Iterator[str]:
        for i in range(5):
            yield str(tmp_path / f"{i}.jpg")
        raise OSError("input/output error")

    # publish chunk by chunk (the module, not the function `producer.submit` re-exports)
    monkeypatch.setattr(importlib.import_module("producer.submit"), "PUBLISH_BATCH_URIS", 2)
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    with pytest.raises(OSError):
        submit_fn("flaky.txt", job="broken", chunk_size=2, settings=settings, uris=flaky())
    # Then the job holds the 4 URIs already published (2 chunks), not 'enumerating' forever
    job = Job.attach("broken", settings)
    st = job.status()
    assert (st.state, st.total) == ("running", 4)
    assert (
        st.submit_error and "after 4 URIs" in st.submit_error and "input/output" in st.submit_error
    )
    # And once those 4 have records the job is done and adds up
    job.store.record_outcomes(
        "broken", [(i, Record(f"u{i}", None, "error", "x", None, "m"), False) for i in range(4)]
    )
    assert job.status().state == "done"


@pytest.mark.parametrize("job_id", ["a:records", "has space", "_leading", "x" * 101])
def test_job_ids_that_would_collide_with_key_names_are_refused(
    job_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["--redis-url", redis_url, "submit", str(tmp_path), "--job", job_id]) == 1
    assert "bad job id" in capsys.readouterr().err


def test_unwritable_output_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["--redis-url", redis_url, "submit", str(tmp_path), "--job", "out"]) == 0
    capsys.readouterr()
    target = str(tmp_path / "missing-dir" / "x.jsonl")
    assert main(["--redis-url", redis_url, "results", "out", "-o", target]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bulktag: error: ") and "\n" not in err and "missing-dir" in err


def test_a_publish_batch_that_fails_is_not_counted(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer.submit import submit as submit_fn
    from tasks.settings import Settings
    from tasks.store import ResultStore, connect

    module = importlib.import_module("producer.submit")
    monkeypatch.setattr(module, "PUBLISH_BATCH_URIS", 4)  # batches of 1, 2, 2 chunks of 2
    real_send = module.send_tag_chunk
    calls = []

    def send_then_fail(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 5:  # inside the third batch: kombu drops that whole batch
            raise ConnectionError("broker connection lost")
        real_send(*args, **kwargs)

    monkeypatch.setattr(module, "send_tag_chunk", send_then_fail)
    uris = [str(tmp_path / f"{i}.jpg") for i in range(10)]
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    with pytest.raises(ConnectionError):
        submit_fn("list", job="half", chunk_size=2, settings=settings, uris=uris)
    store = ResultStore(connect(redis_url))
    st = store.status("half")
    # Only the first two batches (3 chunks, 6 URIs) were published: the job counts those
    assert (st.total, st.state) == (6, "running")
    assert [u for _, u, _ in store.records("half")] == uris[:6]
    assert store.r.llen("bulktag") == 3  # the three chunk messages that were published


def test_cancel_stops_a_producer_waiting_for_queue_room(tmp_path: Path, redis_url: str) -> None:
    import threading

    from producer.submit import submit as submit_fn
    from tasks.errors import ConfigError
    from tasks.settings import Settings
    from tasks.store import ResultStore, connect

    # Given a producer held by --max-queued 1 with no worker draining the queue
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    uris = [str(tmp_path / f"{i}.jpg") for i in range(10)]
    raised: list[BaseException] = []

    def run() -> None:
        try:
            submit_fn("list", job="held", chunk_size=2, settings=settings, uris=uris, max_queued=1)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    store = ResultStore(connect(redis_url))
    deadline = time.monotonic() + 10
    while store.r.llen("bulktag") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # When the job is cancelled
    store.cancel_job("held")
    # Then the producer stops promptly with a clear error instead of waiting forever
    thread.join(10)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], ConfigError)
    assert "cancelled" in str(raised[0])


def test_priority_high_submits_to_the_interactive_lane(tmp_path: Path, redis_url: str) -> None:
    import redis

    from producer import submit as submit_api
    from tasks.settings import Settings

    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    client = redis.Redis.from_url(redis_url)
    # the CLI flag
    argv = ["--redis-url", redis_url, "submit", str(tmp_path), "--chunk-size", "1"]
    assert main([*argv, "--priority", "high", "--job", "cli-high"]) == 0
    assert (client.llen("bulktag.high"), client.llen("bulktag")) == (3, 0)
    assert ResultStore(client).job_field("cli-high", "priority") == "high"
    assert main([*argv, "--job", "cli-normal"]) == 0
    assert (client.llen("bulktag.high"), client.llen("bulktag")) == (3, 3)
    # the Python API
    settings = Settings.from_env({"BULKTAG_REDIS_URL": redis_url, **results_env()})
    submit_api(str(tmp_path), job="py-high", chunk_size=3, settings=settings, priority="high")
    assert client.llen("bulktag.high") == 4
    with pytest.raises(Exception, match="priority must be one of normal, high"):
        submit_api(str(tmp_path), settings=settings, priority="urgent")
