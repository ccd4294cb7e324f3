"""Real processes for tests: a private redis-server and `bulktag worker` subprocesses.

Each is started on a free port / with its own environment and torn down after, so
tests never touch the machine's shared Redis on 6379.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest
import redis

REPO = Path(__file__).resolve().parent.parent
BULKTAG = [sys.executable, "-m", "producer.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_or_fail(problem: str | None) -> None:
    """Skip the test for ``problem`` (a missing service or tool), or fail it under CI.

    CI must prove everything, so there a missing real service is a failure; on a
    developer's machine it is a skip that says what to install.
    """
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def need_binary(name: str, package: str | None = None) -> str:
    """The binary's path; skips (fails under CI) when it is not installed."""
    path = shutil.which(name)
    need_or_fail(None if path else f"{name} not installed (apt-get install {package or name})")
    assert path is not None
    return path


class RedisServer:
    """A redis-server child process on a free loopback port."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.password: str | None = None
        if "--requirepass" in extra:
            self.password = extra[extra.index("--requirepass") + 1]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = need_binary("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--appendonly", "no", *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown save; only what AOF fsynced survives)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, down_for: float = 0.0) -> RedisServer:
        """Kill, stay down ``down_for`` seconds, start again on the same port and dir."""
        self.kill()
        time.sleep(down_for)
        return self.start()


class WorkerProcess:
    """A real `bulktag worker` subprocess (Celery prefork) with its own environment."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.env = env
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log_fh: BinaryIO | None = None

    def start(self) -> WorkerProcess:
        self.started_at = time.monotonic()
        self._log_fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*BULKTAG, "worker", "--loglevel", "info", *self.args],
            cwd=REPO,
            env=self.env,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, client: redis.Redis, processes: int, timeout: float = 60) -> float:
        """Block until ``processes`` pool children registered; seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = [k for k in client.smembers("bulktag:workers") if client.hget(k, "ready_at")]
            if len(ready) >= processes:
                return time.monotonic() - self.started_at
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready; log:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


@contextmanager
def running_worker(
    env: dict[str, str], log: Path, client: redis.Redis, processes: int = 1, *args: str
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(env, log, "--concurrency", str(processes), *args).start()
    try:
        worker.wait_ready(client, processes)
        yield worker
    finally:
        worker.stop()


def results_env() -> dict[str, str]:
    """``BULKTAG_RESULTS_URL`` of the running test (tests/conftest.py sets one per test),
    for settings built from an explicit environment dict."""
    return {"BULKTAG_RESULTS_URL": os.environ["BULKTAG_RESULTS_URL"]}
