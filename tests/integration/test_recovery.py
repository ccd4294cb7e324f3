"""``tasks.recovery`` against a real redis-server and kombu's real Redis transport.

A chunk message is taken from the queue without an ack (so it sits in kombu's
``unacked`` hash, as when a worker holds it), its holder is written as the delivery
ledger writes it, and a sweep decides. Only a holder whose main process has no
heartbeat, with a chunk older than a TTL and the same delivery, is re-queued, once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tasks import keys
from tasks.chunks import ChunkLedger
from tasks.contract import TASK_TAG_CHUNK
from tasks.heartbeats import Beat, HeartbeatStore
from tasks.recovery import Holding, Recovery, recovery_events
from tasks.settings import Settings
from worker.app import create_app

TTL = 30
QUEUE = "bulktag"


@pytest.fixture
def app(redis_url: str) -> Any:
    return create_app(Settings(redis_url=redis_url))


@pytest.fixture
def channel(app: Any) -> Iterator[Any]:
    with app.connection_for_write() as conn:
        yield conn.default_channel


def take_unacked(app: Any, job: str = "j") -> tuple[str, str, Any]:
    """Publish a chunk and take it the way a worker does: un-acked, held by kombu.

    Returns:
        The delivery tag, the task id and the connection holding it (keep it open).
    """
    result = app.send_task(TASK_TAG_CHUNK, args=[job, [[0, "/x.jpg"]], None], queue=QUEUE)
    conn = app.connection_for_write()
    message = conn.default_channel.basic_get(QUEUE, no_ack=False)
    assert message is not None
    return str(message.delivery_tag), str(result.id), conn


def holding(tag: str, *, age: float, consumer_pid: int = 4242, instance: str = "i1") -> Holding:
    return Holding(tag, "j", "0-0", "dead@test", 4343, consumer_pid, instance, time.time() - age)


def recovery(client: redis.Redis) -> Recovery:
    return Recovery(client, HeartbeatStore(client, TTL), "sweeper@test:1")


def held(client: redis.Redis, h: Holding) -> None:
    ChunkLedger(client).begin(h.job, h.chunk, host=h.host, pid=h.pid, uris=1, holding=h)
    # begin stamps its own time; the test's holding carries the age it needs, and its
    # message was delivered just before it began, as a worker's would be
    client.hset(keys.held_deliveries(), h.tag, h.to_json())
    client.zadd("unacked_index", {h.tag: h.started_at - 0.5})


def test_a_dead_holders_chunk_goes_back_once_as_the_original_message(
    app: Any, channel: Any, redis_client: redis.Redis
) -> None:
    # Given a chunk held by a main process whose last heartbeat lapsed
    tag, task_id, conn = take_unacked(app)
    store = HeartbeatStore(redis_client, TTL)
    last = store.beat(Beat("dead@test", 4242, "main", "i1", time.time() - 200))
    redis_client.delete(keys.heartbeat("dead@test", 4242))  # the TTL ran out
    h = holding(tag, age=100)
    held(redis_client, h)
    sweeper = recovery(redis_client)

    # When two sweeps run
    first = sweeper.sweep(channel)
    second = recovery(redis_client).sweep(channel)

    # Then the first re-queued it, the second found nothing to do
    assert [(e.job, e.chunks, e.host, e.pid) for e in first] == [("j", ["0-0"], "dead@test", 4242)]
    assert first[0].died_at == pytest.approx(last.beat_at)
    assert second == []
    assert redis_client.hlen(keys.broker_unacked()) == 0
    assert redis_client.hget(keys.held_deliveries(), tag) is None
    # ...as the original message: same task id and delivery tag, flagged redelivered
    (raw,) = redis_client.lrange(QUEUE, 0, -1)
    message = json.loads(raw)
    assert message["headers"]["id"] == task_id
    assert message["properties"]["delivery_tag"] == tag
    assert message["properties"]["delivery_info"]["redelivered"] is True
    # ...and status can tell the story
    (event,) = recovery_events(redis_client, "j")
    assert event.sentence().startswith("1 chunk held by a worker that died at ")
    assert " was re-queued at " in event.sentence()
    conn.release()


def test_a_live_holder_a_young_chunk_or_a_later_delivery_is_left_alone(
    app: Any, channel: Any, redis_client: redis.Redis
) -> None:
    store = HeartbeatStore(redis_client, TTL)
    # a chunk whose main process still beats (however long the chunk has run)
    tag_live, _, c1 = take_unacked(app)
    store.beat(Beat("dead@test", 4242, "main", "i1", time.time()))
    held(redis_client, holding(tag_live, age=3000))
    # a chunk begun less than a TTL ago (its main process may not have beaten yet)
    tag_young, _, c2 = take_unacked(app)
    held(redis_client, holding(tag_young, age=5, consumer_pid=5151))
    # a chunk whose message was delivered again after the dead holder began it
    tag_later, _, c3 = take_unacked(app)
    held(redis_client, holding(tag_later, age=100, consumer_pid=6161))
    redis_client.zadd("unacked_index", {tag_later: time.time()})
    # a chunk whose dead holder's pid was reused by a new process (other instance)
    tag_reused, _, c4 = take_unacked(app)
    store.beat(Beat("dead@test", 7171, "main", "new-instance", time.time()))
    held(redis_client, holding(tag_reused, age=100, consumer_pid=7171, instance="old"))

    requeued = recovery(redis_client).sweep(channel)

    assert [e.chunks for e in requeued] == [["0-0"]]  # the reused pid only
    assert redis_client.hexists(keys.broker_unacked(), tag_reused) is False
    for tag in (tag_live, tag_young, tag_later):
        assert redis_client.hexists(keys.broker_unacked(), tag)
    assert redis_client.llen(QUEUE) == 1
    for conn in (c1, c2, c3, c4):
        conn.release()


def test_a_claimed_chunk_is_not_requeued_by_a_second_sweeper(
    app: Any, channel: Any, redis_client: redis.Redis
) -> None:
    tag, _, conn = take_unacked(app)
    h = holding(tag, age=100)
    held(redis_client, h)
    redis_client.set(keys.recovery_claim(tag, "dead@test:4242:i1"), "other@test:9")

    assert recovery(redis_client).sweep(channel) == []
    assert redis_client.hexists(keys.broker_unacked(), tag)
    conn.release()


def test_the_ledger_forgets_a_holder_only_if_it_is_still_the_holder(
    redis_client: redis.Redis,
) -> None:
    ledger = ChunkLedger(redis_client)
    first = holding("tag-1", age=0)
    ledger.begin("j", "0-0", host="dead@test", pid=4343, uris=1, holding=first)
    # the chunk was re-queued and begun by another worker; then the first one finishes
    second = Holding("tag-1", "j", "0-0", "b@test", 11, 10, "i2", time.time())
    ledger.begin("j", "0-0", host="b@test", pid=11, uris=1, holding=second)
    ledger.end("j", "0-0", first)

    assert Holding.from_json(redis_client.hget(keys.held_deliveries(), "tag-1") or "") == second
    ledger.end("j", "0-0", second)
    assert redis_client.hget(keys.held_deliveries(), "tag-1") is None
    assert ledger.deliveries("j") == {"0-0": 2}
