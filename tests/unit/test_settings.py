"""Settings come from BULKTAG_* variables with documented defaults and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.cpu import auto_concurrency, available_cores, cgroup_cpu_quota
from tasks.errors import ConfigError
from tasks.settings import DEFAULT_REDIS_URL, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://localhost:6379/0"
    assert s.queue == "bulktag"
    assert s.chunk_size == 32 and s.batch_size == 16
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
    # the upload folder is always readable by workers: it is appended to the roots
    uploads = Path("~/.cache/bulktag/uploads").expanduser()
    assert s.allowed_roots == (Path("/data"), Path("/mnt/photos"), uploads)
    assert (s.effective_concurrency, s.effective_threads) == (2, 3)


def test_upload_settings_and_their_folder_is_an_allowed_root() -> None:
    s = Settings.from_env(
        {
            "BULKTAG_ALLOWED_ROOTS": "/data",
            "BULKTAG_UPLOAD_DIR": "/srv/uploads",
            "BULKTAG_UPLOAD_MAX_BYTES": "1000",
            "BULKTAG_UPLOAD_MAX_TOTAL_BYTES": "5000",
            "BULKTAG_UPLOAD_MAX_FILES": "3",
            "BULKTAG_UPLOAD_RETENTION_DAYS": "0.5",
        }
    )
    assert s.upload_dir == Path("/srv/uploads")
    assert s.allowed_roots == (Path("/data"), Path("/srv/uploads"))
    assert (s.upload_max_bytes, s.upload_max_total_bytes, s.upload_max_files) == (1000, 5000, 3)
    assert s.upload_retention_days == 0.5
    defaults = Settings.from_env({})
    assert defaults.upload_max_bytes == 25 * 1024 * 1024
    assert defaults.upload_max_total_bytes == 200 * 1024 * 1024


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


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [("400000 100000", 4), ("150000 100000", 2), ("50000 100000", 1), ("max 100000", None)],
)
def test_cgroup_v2_cpu_max_sets_the_quota(tmp_path: Path, cpu_max: str, cores: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cgroup_cpu_quota(tmp_path) == cores


@pytest.mark.parametrize(("quota", "cores"), [("200000", 2), ("250000", 3), ("-1", None)])
def test_cgroup_v1_cfs_files_set_the_quota(tmp_path: Path, quota: str, cores: int | None) -> None:
    cpu = tmp_path / "cpu,cpuacct"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text(quota + "\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == cores


def test_available_cores_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    # no cgroup files at all, or "max": the affinity decides
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cores(tmp_path) == affinity
    # a one-core limit (docker --cpus 1) wins over any affinity
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cores(tmp_path) == 1
    # a limit above the affinity does not add cores
    (tmp_path / "cpu.max").write_text(f"{(affinity + 8) * 100000} 100000\n")
    assert available_cores(tmp_path) == affinity


def test_api_allowed_hosts_default_to_loopback_and_drop_ports() -> None:
    assert Settings.from_env({}).api_allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    parsed = Settings.from_env(
        {"BULKTAG_API_ALLOWED_HOSTS": " Tagger.Internal:8080, [::1]:80, ::2, 10.0.0.5,, "}
    )
    assert parsed.api_allowed_hosts == ("tagger.internal", "[::1]", "[::2]", "10.0.0.5")
    assert Settings.from_env({"BULKTAG_API_ALLOWED_HOSTS": "*"}).api_allowed_hosts == ("*",)
    assert Settings.from_env({"BULKTAG_API_MAX_BODY": "1024"}).api_max_body == 1024
