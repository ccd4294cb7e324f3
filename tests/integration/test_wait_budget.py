"""Job.wait against a Redis that goes away for good: the outage budget and the timeout
both end the wait with one line (issue 16, finding 7; the ride-out itself is
tests/e2e/test_wait_outages.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from producer.submit import submit
from tasks.errors import StoreUnavailable
from tasks.settings import Settings
from tests.servers import RedisServer


@pytest.mark.parametrize(
    ("budget", "timeout", "raised"), [(1.0, None, StoreUnavailable), (60.0, 1.0, TimeoutError)]
)
def test_a_redis_that_stays_away_ends_the_wait_with_one_line(
    tmp_path: Path, budget: float, timeout: float | None, raised: type[Exception]
) -> None:
    # Given a submitted job (no worker) and then its Redis gone for good
    server = RedisServer(tmp_path / "redis").start()
    settings = Settings.from_env({"BULKTAG_REDIS_URL": server.url})
    job = submit("list", job="away", settings=settings, uris=[str(tmp_path / "a.jpg")])
    server.stop()
    notes: list[str] = []
    # When it is waited on, then the wait ends by the budget or the timeout, not before
    started = time.monotonic()
    with pytest.raises(raised) as exc:
        job.wait(timeout=timeout, on_outage=notes.append, outage_budget=budget)
    took = time.monotonic() - started
    assert 0.5 <= took < 8, took
    assert "\n" not in str(exc.value)
    assert "away" in str(exc.value)
    assert notes and notes[0].startswith("Redis unreachable while waiting for job away")
