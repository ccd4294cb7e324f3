"""docker-compose.yml without Docker: valid, and every service's command line really runs.

There is no Docker engine on our machines, so each bulktag service's exact argv runs
here with ``--help`` appended (proving the command, its flags and its imports exist),
the Redis service's command line starts a real redis-server, and the environment
variables the file sets are ones bulktag reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.servers import BULKTAG, REPO, free_port, need_binary

COMPOSE = REPO / "docker-compose.yml"
BULKTAG_IMAGES = ("bulktag:latest", "bulktag:gpu")
DEAD_REDIS = "redis://127.0.0.1:1/0"


def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def bulktag_services() -> list[str]:
    return [name for name, spec in services().items() if spec.get("image") in BULKTAG_IMAGES]


def argv(spec: dict[str, Any]) -> list[str]:
    """The container's argv: entrypoint + command, as compose joins them."""
    return list(spec.get("entrypoint") or []) + list(spec.get("command") or [])


def local(argv: list[str]) -> list[str]:
    """The same command for this checkout's venv (the image installs the same entry points)."""
    if argv[0] == "bulktag":
        return [*BULKTAG, *argv[1:]]
    if argv[0] == "celery":
        return [str(Path(BULKTAG[0]).parent / "celery"), *argv[1:]]
    raise AssertionError(f"unexpected executable in compose: {argv[0]}")


def test_compose_file_is_valid_for_docker_compose() -> None:
    binary = need_binary("docker-compose")
    env = {
        **os.environ,
        "REDIS_PASSWORD": "ci-check",
        "POSTGRES_PASSWORD": "ci-check",
        "FLOWER_BASIC_AUTH": "ci:check",
    }
    for profile in ([], ["--profile", "gpu", "--profile", "tools", "--profile", "monitoring"]):
        proc = subprocess.run(
            [binary, *profile, "config", "-q"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", bulktag_services())
def test_each_service_command_runs_outside_docker(name: str, tmp_path: Path) -> None:
    spec = services()[name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    env["BULKTAG_REDIS_URL"] = DEAD_REDIS  # --help must not need Redis
    proc = subprocess.run(
        [*local(argv(spec)), "--help"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


def test_services_only_set_variables_bulktag_reads() -> None:
    known = set(re.findall(r'"(BULKTAG_[A-Z0-9_]+)"', (REPO / "tasks/settings.py").read_text()))
    for name, spec in services().items():
        env = spec.get("environment") or {}
        unknown = {k for k in env if k.startswith("BULKTAG_")} - known
        assert not unknown, f"{name} sets {unknown}, which tasks/settings.py never reads"
    assert services()["worker-gpu"]["environment"]["BULKTAG_QUEUE"] == "bulktag-gpu"
    assert services()["worker"]["stop_grace_period"] == "5m"


def test_redis_service_command_starts_a_password_protected_aof_redis(tmp_path: Path) -> None:
    # Given the redis service's own shell command, pointed at a free port and a temp dir
    spec = services()["redis"]
    shell, flag, script = spec["command"]
    port = free_port()
    script = script.replace("$$", "$") + f" --port {port} --bind 127.0.0.1 --dir {tmp_path}"
    need_binary("redis-server")
    proc = subprocess.Popen(
        [shell, flag, script],
        env={**os.environ, "REDIS_PASSWORD": "s3cret"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        client = redis.Redis(port=port, password="s3cret", decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis did not start"
                time.sleep(0.05)
        # Then it persists with AOF, never evicts, and refuses clients without the password
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("maxmemory") == {"maxmemory": str(1024**3)}  # bounded
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
    finally:
        proc.terminate()
        proc.wait(10)


def test_results_go_to_the_postgres_service_for_every_process_that_reads_them() -> None:
    spec = services()
    assert spec["postgres"]["healthcheck"]["test"][1].startswith("pg_isready")
    assert "postgres-data:/var/lib/postgresql/data" in spec["postgres"]["volumes"]
    for name in ("worker", "worker-gpu", "beat", "api", "submit"):
        url = spec[name]["environment"]["BULKTAG_RESULTS_URL"]
        assert url.startswith("postgresql://bulktag:${POSTGRES_PASSWORD") and "@postgres:" in url
        assert spec[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_prometheus_scrapes_every_worker_replica_and_readme_names_every_service() -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    sd = config["scrape_configs"][0]["dns_sd_configs"][0]
    assert {"worker", "worker-gpu"} <= set(sd["names"])
    assert str(sd["port"]) == services()["worker"]["environment"]["BULKTAG_METRICS_PORT"]
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running it for real", 1)[1].split("\n## ", 1)[0]
    for name in services():
        assert f"`{name}`" in section, f"README's 'Running it for real' does not mention {name}"
