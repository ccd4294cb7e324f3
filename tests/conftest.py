"""Shared fixtures: untrained dev weights, a private redis-server, a private results
database per test, worker environments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.results_db.engine import forget_engines
from tests.postgres import PostgresServer
from tests.servers import RedisServer


@pytest.fixture(scope="session")
def dev_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random-initialised checkpoint (UNTRAINED: labels are meaningless)."""
    from weights.fetch import write_untrained

    path = tmp_path_factory.mktemp("weights") / "resnet18-untrained.pt"
    write_untrained(path, seed=0)
    return path


@pytest.fixture(autouse=True)
def results_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite results database for each test, in ``BULKTAG_RESULTS_URL``.

    Set in this process's environment, so stores built from the environment (and the
    subprocesses of ``worker_env``) use it, never the user's default database. Tests on
    PostgreSQL override it (tests/postgres.py).
    """
    url = f"sqlite:///{tmp_path / 'results.db'}"
    monkeypatch.setenv("BULKTAG_RESULTS_URL", url)
    return url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private server's URL, flushed before and after each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def worker_env(
    redis_url: str, results_url: str, dev_weights: Path, tmp_path: Path
) -> dict[str, str]:
    """Environment for producer and worker subprocesses of one test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    env.update(
        BULKTAG_REDIS_URL=redis_url,
        BULKTAG_RESULTS_URL=results_url,
        BULKTAG_WEIGHTS=str(dev_weights),
        BULKTAG_ALLOWED_ROOTS=str(tmp_path),
        BULKTAG_METRICS_PORT="0",  # tests that scrape set a free port; never bind 9808 here
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the session (tests/postgres.py)."""
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def postgres_url(
    postgres_server: PostgresServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh database on the private server, also put in ``BULKTAG_RESULTS_URL``."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    url = postgres_server.create_database(name)
    monkeypatch.setenv("BULKTAG_RESULTS_URL", url)
    yield url
    forget_engines()  # close this process's connections before the next test drops it
