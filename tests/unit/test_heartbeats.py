"""Heartbeat bookkeeping and the sweeper's self-trust, without a real Redis or worker."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis

from producer.health import Health, health_lines
from tasks import keys
from tasks.heartbeats import Beat, HeartbeatStore, recovery_bound
from tasks.recovery import Requeued
from worker import heartbeat as heartbeat_module
from worker.heartbeat import Pacemaker

TTL = 30


@pytest.fixture
def store() -> HeartbeatStore:
    return HeartbeatStore(fakeredis.FakeRedis(decode_responses=True), TTL)


def beat(pid: int = 7, instance: str = "i1", role: str = "main") -> Beat:
    return Beat("bulktag@a", pid, role, instance, time.time())


def test_a_process_is_alive_while_its_key_lives_then_gone_or_stopped(
    store: HeartbeatStore,
) -> None:
    live = store.beat(beat(7))
    stopping = store.beat(beat(8, role="pool"))
    dead = store.beat(beat(9, role="pool"))
    assert 0 < store.r.ttl(keys.heartbeat("bulktag@a", 7)) <= TTL

    store.r.delete(keys.heartbeat("bulktag@a", 9))  # its TTL ran out
    store.stop(stopping)

    states = {name: (p.state, p.beat.role) for name, p in store.states().items()}
    assert states == {
        "bulktag@a:7": ("alive", "main"),
        "bulktag@a:8": ("stopped", "pool"),
        "bulktag@a:9": ("gone", "pool"),
    }
    assert store.last_beat("bulktag@a", 9) == dead
    assert store.alive({("bulktag@a", 7, "i1"), ("bulktag@a", 9, dead.instance)}) == {
        ("bulktag@a", 7, live.instance)
    }


def test_a_reused_pid_with_another_instance_is_not_the_dead_process(
    store: HeartbeatStore,
) -> None:
    store.beat(beat(7, instance="new"))
    assert store.alive({("bulktag@a", 7, "old")}) == set()


def test_the_default_ttl_promises_recovery_within_a_minute() -> None:
    assert recovery_bound(TTL) == 40


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sweeper_trusts_itself_only_after_a_whole_ttl_of_steady_beats(
    store: HeartbeatStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(heartbeat_module.time, "monotonic", clock)
    pacemaker = Pacemaker(store, beat())

    def beats_until(end: float) -> None:
        while clock.now < end:
            assert pacemaker.beat_once()
            clock.now += pacemaker.interval

    beats_until(1000 + TTL - 6)
    assert not pacemaker.steady()  # not yet a whole TTL of beats
    beats_until(1000 + TTL + 1)
    assert pacemaker.steady()

    # A pause (SIGSTOP, a frozen VM) longer than half a TTL restarts the clock
    clock.now += TTL
    assert not pacemaker.steady()
    pacemaker.beat_once()
    assert not pacemaker.steady()

    # ...and so does a beat Redis did not take
    beats_until(clock.now + TTL + 1)
    assert pacemaker.steady()
    monkeypatch.setattr(store, "beat", lambda b: (_ for _ in ()).throw(redis.ConnectionError()))
    assert not pacemaker.beat_once()
    assert not pacemaker.steady()


def test_status_tells_what_a_recovery_did() -> None:
    died = time.mktime((2026, 12, 1, 14, 2, 11, 0, 0, -1))
    event = Requeued("j", ["0-31", "32-63"], "bulktag@b", 4711, died, died + 42, "bulktag@a:1")
    health = Health("progressing", "last result 3s ago", 3.0, recoveries=[event.to_dict()])

    assert health_lines(health)[1] == (
        "recovered 2 chunks held by a worker that died at 14:02:11 were re-queued at "
        "14:02:53 (bulktag@b, pid 4711)"
    )
    one = Requeued("j", ["0-31"], "bulktag@b", 4711, None, died, "bulktag@a:1")
    assert one.sentence().startswith("1 chunk held by a worker that died was re-queued at")
