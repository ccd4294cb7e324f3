"""``bulktag db upgrade``, ``bulktag delete`` and ``bulktag prune``: the results database.

Retention never asks for confirmation: scripts and cron call it.
"""

from __future__ import annotations

import argparse

from producer.cli.common import settings_for


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {value!r}") from None
    if days < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {days}")
    return days


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Bring the results database's schema to this bulktag's revision (Alembic)."""
    from tasks.results_db import engine as engines

    url = settings_for(args).results_url
    engine = engines.create_engine(url)
    try:
        before = engines.current_revision(engine)
        engines.ensure_schema(engine)
        after = engines.current_revision(engine)
    finally:
        engine.dispose()
    where = engines.safe_url(url)
    if before == after:
        print(f"{where}: schema already at revision {after}")
    else:
        print(f"{where}: schema upgraded from revision {before or 'none'} to {after}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a job's records and job (a running job is cancelled first)."""
    from tasks.store import open_store

    store = open_store(settings_for(args))
    status = store.status(args.job)  # raises JobNotFound: one clear line
    if not status.finished:
        store.cancel_job(args.job)
    store.delete_job(args.job, cache=args.cache)
    extra = " and the cache entries only it used" if args.cache else ""
    print(f"deleted job {args.job}: {status.done_count} records{extra}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete jobs that finished more than ``--older-than`` days ago."""
    from tasks.store import open_store

    jobs, cached = open_store(settings_for(args)).prune(args.older_than, cache=args.cache)
    line = f"pruned {jobs} job(s) finished more than {args.older_than:g} day(s) ago"
    if args.cache:
        line += f", {cached} cache entr{'y' if cached == 1 else 'ies'} no job references"
    print(line)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``db``, ``delete`` and ``prune`` to the ``bulktag`` command."""
    p = sub.add_parser("db", help="the results database: schema upgrades")
    dsub = p.add_subparsers(dest="db_cmd", required=True, metavar="ACTION")
    d = dsub.add_parser("upgrade", help="migrate the schema to this version (never drops results)")
    d.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("delete", help="delete a job's records and job (no prompt)")
    p.add_argument("job")
    p.add_argument(
        "--cache", action="store_true", help="also drop dedupe-cache entries no other job uses"
    )
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("prune", help="delete jobs finished more than DAYS ago (no prompt)")
    p.add_argument("--older-than", type=_days, required=True, metavar="DAYS")
    p.add_argument(
        "--cache", action="store_true", help="also drop old cache entries no record references"
    )
    p.set_defaults(func=cmd_prune)
