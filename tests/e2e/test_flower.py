"""Flower, as the compose file runs it, monitors real bulktag workers and wants a login."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.servers import BULKTAG, REPO, free_port, running_worker

pytestmark = pytest.mark.e2e

AUTH = "ops:s3cret-pass"


def get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return 0, ""


def test_flower_lists_the_worker_and_refuses_anonymous_access(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    celery = str(Path(BULKTAG[0]).parent / "celery")
    env = {**worker_env, "FLOWER_BASIC_AUTH": AUTH, "PYTHONPATH": str(REPO)}
    args = ["--hostname", "flowerwatch@test"]
    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1, *args):
        # Given Flower started with the compose file's command line
        flower = subprocess.Popen(
            [celery, "-A", "worker.app", "flower", f"--port={port}", "--address=127.0.0.1"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            workers: dict[str, object] = {}
            while time.monotonic() < deadline:
                status, body = get(f"{base}/api/workers?refresh=1", AUTH)
                if status == 200 and body:
                    workers = json.loads(body)
                    if "flowerwatch@test" in workers:
                        break
                assert flower.poll() is None, "flower exited"
                time.sleep(0.5)
            # Then it sees the worker, with bulktag's task registered
            assert "flowerwatch@test" in workers, workers
            registered = workers["flowerwatch@test"].get("registered", [])  # type: ignore[attr-defined]
            assert any("bulktag.tag_chunk" in t for t in registered)
            # And nobody gets in without the login
            assert get(f"{base}/api/workers")[0] == 401
            assert get(f"{base}/", "ops:wrong")[0] == 401
        finally:
            flower.terminate()
            flower.wait(10)
