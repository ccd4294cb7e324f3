"""The Celery delivery settings the reliability guarantees rest on (docs/RELIABILITY.md)."""

from __future__ import annotations

import ssl

import pytest

from tasks.errors import ConfigError
from tasks.settings import MIN_VISIBILITY_TIMEOUT, Settings
from worker.app import create_app
from worker.delivery import broker_ssl, chunk_time_limit, restore_interval


def test_app_acks_late_requeues_lost_and_timed_out_chunks_and_speaks_json_only() -> None:
    conf = create_app(Settings(visibility_timeout=600)).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_acks_on_timeout is False
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    options = conf.broker_transport_options
    assert options["visibility_timeout"] == 600
    # a hung chunk is killed by its own worker before Redis hands out a copy
    assert conf.task_time_limit == 540 < options["visibility_timeout"]
    # and kombu looks for expired un-acked messages often enough to matter
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] <= 60


@pytest.mark.parametrize("vt", [MIN_VISIBILITY_TIMEOUT, 60, 3600, 86_400])
def test_time_limit_and_restore_sweep_scale_with_the_visibility_timeout(vt: int) -> None:
    assert 0 < chunk_time_limit(vt) < vt
    assert 1 <= restore_interval(vt) <= min(10, vt)


def test_visibility_timeout_has_a_floor() -> None:
    env = {"BULKTAG_VISIBILITY_TIMEOUT": str(MIN_VISIBILITY_TIMEOUT)}
    assert Settings.from_env(env).visibility_timeout == MIN_VISIBILITY_TIMEOUT
    with pytest.raises(ConfigError, match="BULKTAG_VISIBILITY_TIMEOUT must be >="):
        Settings.from_env({"BULKTAG_VISIBILITY_TIMEOUT": "2"})


def test_bare_rediss_broker_verifies_certificates() -> None:
    # kombu alone would fall back to CERT_NONE for a bare rediss:// URL
    assert broker_ssl("rediss://:pw@redis.example:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    conf = create_app(Settings(redis_url="rediss://redis.example:6380/0")).conf
    assert conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    # explicit ssl_* options in the URL are the operator's choice and pass through
    assert broker_ssl("rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem") is None
    assert broker_ssl("redis://h:6379/0") is None
    assert not create_app(Settings(redis_url="redis://h:6379/0")).conf.broker_use_ssl
