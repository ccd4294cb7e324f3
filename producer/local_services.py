"""The processes ``bulktag run`` starts and must stop: a private redis-server, a worker.

Each child runs in a session (process group) of its own: a Ctrl-C in the terminal then
reaches ``bulktag run`` alone, which stops the children in order (worker first, so it
can finish its chunk, then Redis, which saves). Stopping kills the whole group, so a
worker's pool processes go with their parent. On Linux each child also asks the kernel
for SIGTERM when ``bulktag run`` dies (``PR_SET_PDEATHSIG``): a SIGKILLed or OOM-killed
``bulktag run`` leaves no orphan either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import redis

from tasks.errors import BulktagError, ConfigError

# What a missing redis-server binary is answered with (one line, every platform).
INSTALL_REDIS = (
    "bulktag run needs a redis-server binary on PATH: `sudo apt-get install redis-server` "
    "(Debian/Ubuntu), `brew install redis` (macOS), or `docker compose up -d redis` and "
    "pass --redis-url redis://localhost:6379/0"
)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
REDIS_START_TIMEOUT = 30.0  # seconds: loading a large saved cache (dump.rdb) takes a while
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
WORKER_STOP_GRACE = 30.0  # seconds: a warm shutdown lets the running chunk finish first


class ServiceError(BulktagError):
    """A process ``bulktag run`` started could not start, or died under it."""


def _die_with_parent(parent: int) -> Any:
    """A ``preexec_fn``: SIGTERM this child when ``parent`` exits (Linux; else a no-op)."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by spawn()
        if not sys.platform.startswith("linux"):
            return
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM (blocked, delivered at the end of the block).

    Wrapped around ``self.proc = spawn(...)``: a signal arriving between the fork and
    the assignment would otherwise leave a child nobody holds a handle to, so nobody
    stops it.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def spawn(
    args: list[str], *, env: dict[str, str] | None, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new session that dies with this process; output to ``log``.

    Call it inside ``signals_held()``; the child unblocks the signals for itself.
    """
    return subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # preexec_fn is fork-safe here: no other thread runs while children start.
        preexec_fn=_die_with_parent(os.getpid()),
    )


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL it after ``grace`` seconds, reap the leader.

    The group is signalled even when its leader has already exited: pool children it
    left behind are still members and would otherwise outlive the run.
    """
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers of a leader that exited alone


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def last_line(log: Path, prefer: str = "bulktag: error:") -> str:
    """The most telling line of a child's log: its last ``prefer`` line, else its last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith(prefer):
            return line.removeprefix(prefer).strip()
    return lines[-1] if lines else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server on a free loopback port with a random password, data in ``data_dir``.

    Snapshots are off while it runs; ``stop(save=True)`` writes one ``dump.rdb`` on the
    way out, which the next start in the same folder loads (the dedupe cache and job
    records survive between runs).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        """Start the server; return its URL (password included).

        Raises:
            ConfigError: no redis-server binary (the line says how to get one).
            ServiceError: it did not answer (the line quotes its log).
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(INSTALL_REDIS)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_hex(16)
        for _ in range(3):  # another process may take the free port before redis binds it
            port = free_port()
            self.url = f"redis://:{password}@127.0.0.1:{port}/0"
            args = [binary, "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--requirepass", password, "--dir", str(self.data_dir)]
            args += ["--save", "", "--appendonly", "no", "--logfile", str(self.log_path)]
            with open(self.log_path, "ab") as log, signals_held():
                self.proc = spawn(args, env=None, log=log)
            if self._answers():
                return self.url
        raise ServiceError(
            f"redis-server did not start ({last_line(self.log_path) or 'no log'}); its data "
            f"is in {self.data_dir} (move that folder away to start with an empty cache)"
        )

    def _answers(self) -> bool:
        assert self.proc is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return True
                except redis.ConnectionError:  # not listening yet, or still loading the dump
                    if self.proc.poll() is not None:
                        return False
                    time.sleep(0.02)
            stop_group(self.proc, 1.0)
            return False
        finally:
            client.close()

    def stop(self, *, save: bool) -> None:
        """Shut the server down, writing ``dump.rdb`` first when ``save``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
                # redis-py swallows the connection reset a successful SHUTDOWN causes.
                client.shutdown(save=save, nosave=not save)
        stop_group(self.proc, 10.0)


class LocalWorker:
    """A ``bulktag worker`` child process; its output goes to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalWorker:
        with open(self.log_path, "wb") as log, signals_held():
            self.proc = spawn(
                [sys.executable, "-m", "producer.cli", "worker", *self.args],
                env=self.env,
                log=log,
            )
        return self

    def check(self) -> None:
        """Raise ServiceError when the worker has exited (it should run until stopped)."""
        if self.proc is not None and self.proc.poll() is not None:
            reason = last_line(self.log_path) or f"exit status {self.proc.returncode}"
            raise ServiceError(f"the local worker stopped: {reason} (log: {self.log_path})")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, WORKER_STOP_GRACE)
