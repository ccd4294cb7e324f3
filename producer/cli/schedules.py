"""Scheduled runs: ``bulktag beat`` and ``bulktag schedule list|run|reset``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from producer.cli.common import settings_for


def cmd_beat(args: argparse.Namespace) -> int:
    from producer.beat import start_beat

    start_beat(
        settings_for(args), schedules=args.schedules, state=args.state, loglevel=args.loglevel
    )
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from producer.schedules import load_schedules
    from tasks.errors import StoreUnavailable
    from tasks.source_index import SourceIndex
    from tasks.store import connect
    from worker.app import create_app

    settings = settings_for(args)
    parsed = load_schedules(args.schedules or settings.schedules)
    app = create_app(settings)
    app.conf.timezone = parsed.timezone
    tz = ZoneInfo(parsed.timezone)
    try:
        client: Any = connect(settings.redis_url)
    except StoreUnavailable as exc:
        client = None
        print(f"bulktag: note: last runs unknown: {exc}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for entry in parsed.schedules:
        state = SourceIndex(client, entry.name).state() if client is not None else {}
        last = float(state["last_run_at"]) if state.get("last_run_at") else None
        last_dt = datetime.fromtimestamp(last, tz) if last else None
        rows.append(
            {
                "name": entry.name,
                "when": entry.describe(),
                "timezone": parsed.timezone,
                "next_run": entry.next_run(app, last_dt).astimezone(tz).isoformat("T", "seconds"),
                "last_run": last_dt.isoformat("T", "seconds") if last_dt else None,
                "last_job": state.get("last_job") or None,
                "last_enqueued": int(state.get("last_enqueued", 0)),
                "last_unchanged": int(state.get("last_unchanged", 0)),
                "sources": list(entry.sources),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        last_run = row["last_run"] or "never"
        print(f"{row['name']}: {row['when']} ({row['timezone']})  next {row['next_run']}")
        print(f"  sources   {' '.join(row['sources'])}")
        print(f"  last run  {last_run}  job {row['last_job'] or '-'}", end="")
        print(f"  enqueued {row['last_enqueued']}  unchanged {row['last_unchanged']}")
    if not rows:
        print(f"no schedules in {parsed.path}")
    return 0


def cmd_schedule_run(args: argparse.Namespace) -> int:
    from producer.incremental import run_incremental
    from producer.schedules import load_schedules

    settings = settings_for(args)
    entry = load_schedules(args.schedules or settings.schedules).get(args.name)
    settings = settings.with_overrides(queue=entry.queue)
    report = run_incremental(
        entry.name, entry.sources, settings=settings, chunk_size=entry.chunk_size, model=args.model
    )
    print(json.dumps(report.to_dict()))
    return 0


def cmd_schedule_reset(args: argparse.Namespace) -> int:
    from tasks.source_index import SourceIndex
    from tasks.store import connect

    index = SourceIndex(connect(settings_for(args).redis_url), args.name)
    size = index.size()
    index.reset()
    print(f"schedule {args.name}: forgot {size} index entries; its next run tags everything")
    return 0


def add_commands(sub: Any) -> None:
    """Register this group's subcommands on ``sub``."""
    schedules_help = "schedules file (env BULKTAG_SCHEDULES; default ./schedules.toml)"
    p = sub.add_parser("beat", help="run Celery beat with the schedules file")
    p.add_argument("--schedules", type=Path, help=schedules_help)
    p.add_argument("--state", type=Path, help="beat's state file (~/.cache/bulktag/beat-state)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("schedule", help="scheduled incremental runs: list, run, reset")
    ssub = p.add_subparsers(dest="schedule_cmd", required=True, metavar="ACTION")
    s = ssub.add_parser("list", help="each schedule, its next run and its last run")
    s.add_argument("--schedules", type=Path, help=schedules_help)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_schedule_list)
    s = ssub.add_parser("run", help="run one schedule now, in this process")
    s.add_argument("name")
    s.add_argument("--schedules", type=Path, help=schedules_help)
    s.add_argument("--model", help="compare with this model id (default: the current model)")
    s.set_defaults(func=cmd_schedule_run)
    s = ssub.add_parser("reset", help="forget what a schedule has tagged (next run: all)")
    s.add_argument("name")
    s.set_defaults(func=cmd_schedule_reset)
