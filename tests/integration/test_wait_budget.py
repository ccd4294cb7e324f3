"""Job.wait against a Redis that goes away for good (issue 16, finding 7).

Progress lives in the results database, so a wait no longer depends on Redis: with the
broker gone it keeps reading the job's progress and ends by its timeout, with one line
(the ride-out of a short outage is tests/e2e/test_wait_outages.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from producer.submit import submit
from tasks.settings import Settings
from tests.servers import RedisServer


def test_a_redis_that_stays_away_ends_the_wait_by_its_timeout(tmp_path: Path) -> None:
    # Given a submitted job (no worker) and then its Redis gone for good
    server = RedisServer(tmp_path / "redis").start()
    settings = Settings.from_env(
        {
            "BULKTAG_REDIS_URL": server.url,
            "BULKTAG_RESULTS_URL": f"sqlite:///{tmp_path / 'results.db'}",
        }
    )
    job = submit("list", job="away", settings=settings, uris=[str(tmp_path / "a.jpg")])
    server.stop()
    # When it is waited on with a timeout, then the wait ends by the timeout, not before,
    # with one line that names the job and where it stands
    started = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        job.wait(timeout=1.0, outage_budget=60.0)
    took = time.monotonic() - started
    assert 0.5 <= took < 8, took
    assert "\n" not in str(exc.value)
    assert str(exc.value) == "job away not finished after 1.0s: 0/1 done"
