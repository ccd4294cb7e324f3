"""`bulktag run`'s private redis-server: a real one, saved between runs, stopped whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from producer.local_services import PrivateRedis, ServiceError
from tests.servers import need_binary


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_data_saved_on_stop_is_there_at_the_next_start_and_the_server_is_gone(
    tmp_path: Path,
) -> None:
    need_binary("redis-server")
    server = PrivateRedis(tmp_path / "redis")
    url = server.start()
    assert ":@" not in url and "@127.0.0.1:" in url  # a random password in the URL
    with pytest.raises(redis.AuthenticationError):  # nobody else on the machine gets in
        redis.Redis(port=int(url.rsplit(":", 1)[1].split("/")[0])).set("k", "v")
    redis.Redis.from_url(url).set("cache", "kept")
    assert server.proc is not None
    pid = server.proc.pid
    server.stop(save=True)
    assert _gone(pid)

    again = PrivateRedis(tmp_path / "redis")
    url2 = again.start()
    try:
        assert url2 != url  # a new port and password each time
        assert redis.Redis.from_url(url2).get("cache") == b"kept"
        redis.Redis.from_url(url2).set("cache", "changed")
    finally:
        again.stop(save=False)  # a temporary folder's server: nothing written
    third = PrivateRedis(tmp_path / "redis")
    try:
        assert redis.Redis.from_url(third.start()).get("cache") == b"kept"
    finally:
        third.stop(save=False)


def test_a_server_that_cannot_start_names_its_data_folder(tmp_path: Path) -> None:
    need_binary("redis-server")
    data = tmp_path / "redis"
    data.mkdir()
    (data / "dump.rdb").write_bytes(b"REDIS0011 this is not an RDB file")
    with pytest.raises(ServiceError, match=f"its data is in {data}"):
        PrivateRedis(data).start()
