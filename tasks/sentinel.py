"""Redis Sentinel URLs: one ``BULKTAG_REDIS_URL`` for a highly available Redis.

Kombu (the broker) already speaks Sentinel with URLs like
``sentinel://:PASS@s1:26379;sentinel://:PASS@s2:26379/0`` plus a ``master_name``
transport option; redis-py (the results store) needs ``redis.sentinel.Sentinel``. bulktag
takes the master name as a query parameter so one variable configures both::

    sentinel://:PASS@s1:26379;sentinel://:PASS@s2:26379;sentinel://:PASS@s3:26379/0?master_name=mymaster

The password is the Redis master's (``requirepass``); the sentinels themselves are
contacted without one. Both clients ask the sentinels for the current master and follow
a failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tasks.errors import ConfigError

SCHEME = "sentinel://"


def is_sentinel(url: str) -> bool:
    return url.startswith(SCHEME)


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed Sentinel URL."""

    hosts: tuple[tuple[str, int], ...]
    master_name: str
    password: str | None
    db: int
    broker_url: str  # the URL kombu gets: the same, without bulktag's query


def parse(url: str) -> SentinelUrl:
    """Parse ``sentinel://[:PASS@]host:port;sentinel://...[/db]?master_name=NAME``.

    Raises:
        ConfigError: no ``master_name``, or a host without a port.
    """
    base, _, query = url.partition("?")
    master = parse_qs(query).get("master_name", [""])[0]
    if not master:
        raise ConfigError("a sentinel:// Redis URL needs ?master_name=NAME at its end")
    hosts: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for part in base.split(";"):
        split = urlsplit(part.strip())
        if split.scheme != "sentinel" or not split.hostname or not split.port:
            raise ConfigError(f"bad sentinel address {part!r}: want sentinel://host:port")
        hosts.append((split.hostname, split.port))
        password = unquote(split.password) if split.password else password
        if split.path.strip("/"):
            db = int(split.path.strip("/"))
    return SentinelUrl(tuple(hosts), master, password, db, base)


def sentinel_kwargs() -> dict[str, Any]:
    """How to talk to the sentinels themselves: fail fast and move on to the next one.

    redis-py retries a refused connection with seconds of backoff by default; with one
    sentinel down that would stall every new connection.
    """
    return {"socket_timeout": 5, "socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0)}


def master_client(url: str, **kwargs: Any) -> redis.Redis:
    """A redis-py client for the current master behind the sentinels in ``url``."""
    parsed = parse(url)
    # redis-py's Sentinel API carries no type hints.
    hosts = list(parsed.hosts)
    sentinels = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs())  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        parsed.master_name, password=parsed.password, db=parsed.db, **kwargs
    )
    return master


def broker_settings(url: str) -> tuple[str, dict[str, Any]]:
    """``(broker_url, transport options)`` for Celery: the master name moves to the options."""
    if not is_sentinel(url):
        return url, {}
    parsed = parse(url)
    return parsed.broker_url, {
        "master_name": parsed.master_name,
        "sentinel_kwargs": sentinel_kwargs(),
    }
