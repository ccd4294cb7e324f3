"""Settings come from BULKTAG_* variables with documented defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ConfigError
from worker.settings import DEFAULT_REDIS_URL, Settings, auto_concurrency


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://localhost:6379/0"
    assert s.queue == "bulktag"
    assert s.chunk_size == 32 and s.batch_size == 32
    assert Path.home() in s.allowed_roots


def test_env_overrides_and_roots() -> None:
    s = Settings.from_env(
        {
            "BULKTAG_REDIS_URL": "redis://h:1/2",
            "BULKTAG_CHUNK_SIZE": "8",
            "BULKTAG_ALLOWED_ROOTS": "/data:/mnt/photos",
            "BULKTAG_THREADS": "3",
            "BULKTAG_CONCURRENCY": "2",
        }
    )
    assert s.redis_url == "redis://h:1/2"
    assert s.chunk_size == 8
    assert s.allowed_roots == (Path("/data"), Path("/mnt/photos"))
    assert (s.effective_concurrency, s.effective_threads) == (2, 3)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BULKTAG_CHUNK_SIZE", "many", "must be an integer"),
        ("BULKTAG_BATCH_SIZE", "0", "must be >= 1"),
        ("BULKTAG_CHANNELS_LAST", "maybe", "true or false"),
    ],
)
def test_bad_values_raise_config_error(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})


def test_auto_concurrency_never_oversubscribes() -> None:
    for cores in (1, 2, 4, 8, 16, 64):
        processes = auto_concurrency(cores)
        assert processes >= 1
        assert processes * max(1, cores // processes) <= cores
