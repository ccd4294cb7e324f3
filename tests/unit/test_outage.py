"""The wait's outage budget and the no-consumer note, without Redis (issue 16, finding 7).

The real-process versions are in tests/e2e/test_wait_outages.py; these pin the edges:
backoff bounds, the budget, one note per change of state.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from producer import consumers
from producer.consumers import ConsumerWatch
from producer.outage import Outage
from tasks.errors import StoreUnavailable
from tasks.records import JobStatus


def test_an_outage_backs_off_notes_once_and_gives_up_after_its_budget() -> None:
    notes: list[str] = []
    outage = Outage("j", budget=0.3, note=notes.append)
    delays = [outage.failed(redis.ConnectionError("down")) for _ in range(4)]
    assert all(0 < d <= 5.0 for d in delays)
    assert delays[-1] > delays[0] / 2  # grows (with jitter) rather than shrinking
    assert notes == [
        "Redis unreachable while waiting for job j (ConnectionError: down); retrying for up to 0.3s"
    ]
    outage.succeeded()
    assert notes[-1].startswith("Redis is back after ")
    outage.failed(redis.ConnectionError("down again"))
    time.sleep(0.35)
    with pytest.raises(StoreUnavailable, match=r"unreachable for 0s|unreachable for \ds"):
        outage.failed(redis.ConnectionError("still down"))


def status(done: int, state: str = "running") -> JobStatus:
    h = {
        "state": state,
        "total": "10",
        "ok": str(done),
        "error": "0",
        "deduped": "0",
        "chunk_size": "2",
        "created_at": "0",
    }
    return JobStatus.from_hash("j", h)


def test_no_consumer_is_noted_once_after_a_quiet_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "ASK_AFTER", 0.0)
    monkeypatch.setattr(consumers, "ASK_EVERY", 0.0)
    answers: list[list[str]] = [[], [], ["celery@host"]]
    asked: list[str] = []

    def ask(app: Any, queue: str) -> list[str]:
        asked.append(queue)
        return answers.pop(0)

    notes: list[str] = []
    watch = ConsumerWatch(None, "bulktag", notes.append, ask=ask)
    watch(status(0))  # first sight: progress, nothing asked
    watch(status(0))
    watch(status(0))
    watch(status(0))
    assert asked == ["bulktag"] * 3
    assert notes == [
        "no worker is consuming queue bulktag (start `bulktag worker`, or check "
        "BULKTAG_QUEUE and BULKTAG_REDIS_URL); still waiting",
        "celery@host now consuming queue bulktag",
    ]
    watch(status(10, "done"))  # a finished job asks nothing
    assert len(asked) == 3
