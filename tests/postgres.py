"""A private PostgreSQL server for tests: initdb + pg_ctl on a free loopback port.

Never the machine's shared server on 5432. The binaries come from Debian's
``postgresql`` package (``/usr/lib/postgresql/<version>/bin``, installed by the
Makefile) or the PATH. initdb refuses to run as root, so under root (CI) the cluster
belongs to ``nobody`` and every server command runs through ``runuser``. Under
``CI=true`` a missing PostgreSQL fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from tests.servers import free_port, need_or_fail

SUPERUSER = "bulktag"
UNPRIVILEGED = "nobody"  # owns the cluster when the tests run as root


def pg_binary(name: str) -> str:
    """``initdb`` / ``pg_ctl`` from Debian's versioned directory (newest) or the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    path = found[-1] if found else shutil.which(name)
    need_or_fail(None if path else f"{name} not installed (apt-get install postgresql)")
    assert path is not None
    return path


def _version(path: str) -> float:
    try:
        return float(Path(path).parts[-3])
    except ValueError:
        return 0.0


class PostgresServer:
    """A throw-away PostgreSQL cluster (fsync off: tests need no durability across OS
    crashes, and a server killed -9 still loses nothing that was committed)."""

    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp dir: that is 0700 root, which ``nobody`` cannot enter.
        self.datadir = Path(tempfile.mkdtemp(prefix="bulktag-pg-"))
        self.as_root = os.geteuid() == 0
        self.initdb = pg_binary("initdb")
        self.pg_ctl = pg_binary("pg_ctl")

    def _run(self, *args: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", UNPRIVILEGED, "--"] if self.as_root else []
        proc = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, cwd="/"
        )
        if proc.returncode != 0:
            log = self.datadir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {proc.stderr.strip()}\n{tail}")

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        if self.as_root:
            shutil.chown(self.datadir, UNPRIVILEGED)
        cluster = self.datadir / "data"
        if not cluster.exists():
            self._run(
                self.initdb, "-D", str(cluster), "-U", SUPERUSER, "--auth=trust",
                "-E", "UTF8", "--no-sync", "--no-instructions",
            )  # fmt: skip
        options = f"-p {self.port} -h 127.0.0.1 -k {self.datadir} -F -c max_connections=200"
        self._run(
            self.pg_ctl, "-D", str(cluster), "-o", options,
            "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: no checkpoint, like a crash)."""
        self._run(self.pg_ctl, "-D", str(self.datadir / "data"), "-m", mode, "-w", "stop")

    def restart(self, down_for: float = 0.0) -> None:
        """Stop abruptly, stay down ``down_for`` seconds, start again on the same port."""
        self.stop("immediate")
        time.sleep(down_for)
        self.start()

    def create_database(self, name: str) -> str:
        """A fresh empty database; returns its URL."""
        engine = sa.create_engine(
            self.admin_url().replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
        )
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.admin_url(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
