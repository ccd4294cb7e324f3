"""A sentinel:// URL reaches the master through a real Redis Sentinel, for store and broker."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.contract import TASK_TAG_CHUNK
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.servers import RedisServer, free_port, need_binary
from worker.app import create_app


@pytest.fixture
def sentinel_url(tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    """A password-protected master and one sentinel watching it (quorum 1)."""
    master = RedisServer(tmp_path / "master", "--requirepass", "pw").start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel auth-pass mymaster pw\n"
    )
    proc = subprocess.Popen(
        [need_binary("redis-server"), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        probe = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe.sentinel_get_master_addr_by_name("mymaster"):
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "sentinel not up"
            time.sleep(0.05)
        dead = free_port()  # a second, unreachable sentinel: clients must skip it
        yield (
            f"sentinel://:pw@127.0.0.1:{dead};sentinel://:pw@127.0.0.1:{port}/0"
            "?master_name=mymaster",
            master,
        )
    finally:
        proc.terminate()
        proc.wait(10)
        master.stop()


def test_store_and_broker_both_find_the_master_through_sentinel(
    sentinel_url: tuple[str, RedisServer],
) -> None:
    url, master = sentinel_url
    direct = redis.Redis.from_url(master.url, decode_responses=True)

    # The store's work state goes to the master the sentinel names
    store = ResultStore(connect(url))
    store.worker_info("host", 1, ready_at=1.0)
    assert direct.hget("bulktag:worker:host:1", "ready_at") == "1.0"

    # ...and a producer's chunk message lands in the master's queue
    app = create_app(Settings(redis_url=url))
    app.send_task(TASK_TAG_CHUNK, args=["ha", [[0, "/x.jpg"]], {}], queue="bulktag")
    assert direct.llen("bulktag") == 1


def test_a_sentinel_url_without_master_name_is_one_clear_error() -> None:
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs \?master_name=NAME"):
        connect("sentinel://127.0.0.1:26379/0")
