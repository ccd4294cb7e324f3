"""Engines for the results database: URL rules, SQLite pragmas, schema check on open.

One engine per URL per process (``engine_for``). SQLite runs in WAL mode with a busy
timeout, so the producer, every worker process and the API of one machine share one
file; write transactions begin ``IMMEDIATE`` so two writers queue on the busy timeout
instead of failing when one upgrades a read lock. PostgreSQL connections are
pre-pinged, so a server restart costs a reconnect, not an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import StaticPool

from tasks.errors import ConfigError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another's transaction
PG_MIGRATION_LOCK = 0x62756C6B  # "bulk": pg_advisory_lock key held while upgrading

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` -> the psycopg 3 driver; sqlite URLs as they are.

    Raises:
        ConfigError: any other scheme, or a relative SQLite path (processes started in
            different directories would each open a different file).
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://"):
        return url
    if url == "sqlite://" or url == "sqlite:///:memory:":
        return "sqlite://"
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path.startswith("/"):
            raise ConfigError(
                f"BULKTAG_RESULTS_URL {url!r}: use an absolute path (sqlite:////abs/path.db "
                "is sqlite:/// followed by /abs/path.db)"
            )
        return url
    raise ConfigError(
        f"BULKTAG_RESULTS_URL {safe_url(url)!r}: expected sqlite:///ABSOLUTE/PATH.db "
        "or postgresql://user:pass@host:port/db"
    )


def safe_url(url: str) -> str:
    """The URL with any password masked, for errors and logs."""
    with contextlib.suppress(Exception):
        return sa.make_url(url).render_as_string(hide_password=True)
    return url.split("@")[-1]


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_engine(url: str) -> sa.Engine:
    memory = url == "sqlite://"
    if not memory:
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


def create_engine(url: str) -> sa.Engine:
    """A new engine for ``url`` (see ``normalise_url``); the schema is not checked."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)


def engine_for(url: str) -> sa.Engine:
    """This process's engine for ``url``, its schema checked (and upgraded) once.

    Raises:
        ConfigError: a bad URL, or a database written by a newer bulktag.
        StoreUnavailable: the database cannot be reached.
    """
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(url)
            try:
                ensure_schema(engine)
            except sa.exc.OperationalError as exc:
                engine.dispose()
                raise StoreUnavailable(
                    f"cannot open the results database {safe_url(url)}: {exc.orig}"
                ) from exc
            _engines[url] = engine
        return engine


def forget_engines() -> None:
    """Close and forget every cached engine (tests, before a database is dropped)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _after_fork_in_child() -> None:
    """A forked child (Celery prefork) must not share its parent's pooled connections:
    keep the engines (schemas already checked) but give each a fresh pool."""
    global _lock
    _lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _alembic_config(conn: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(engine: sa.Engine) -> None:
    """Bring the schema to this code's head revision, or say why it cannot.

    A fresh database is created and an older one upgraded (migrations only add: an
    upgrade never drops results); concurrent openers serialise on a lock. A database
    already at a revision this code does not know was written by a newer bulktag.

    Raises:
        ConfigError: the database's revision is unknown to this bulktag.
    """
    head = head_revision()
    if current_revision(engine) == head:
        return
    with _migration_lock(engine):
        current = current_revision(engine)
        if current == head:
            return
        known = {
            s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
        }
        if current is not None and current not in known:
            raise ConfigError(
                f"the results database is at schema revision {current}, which this bulktag "
                f"does not know (its newest is {head}): upgrade bulktag"
            )
        upgrade(engine)


def upgrade(engine: sa.Engine) -> None:
    """Run every pending migration (``bulktag db upgrade``)."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold a cross-process lock while migrating: a file lock (SQLite), advisory (PG)."""
    if is_sqlite(engine):
        database = engine.url.database
        if not database:  # in-memory: one process
            yield
            return
        with open(database + ".migrate-lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
            conn.commit()
