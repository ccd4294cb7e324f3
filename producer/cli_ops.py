"""Operator commands of ``bulktag``: beat, schedule list/run/reset, reprocess, models.

Kept apart from ``producer.cli`` (which registers them through ``add_commands``) so the
everyday commands stay readable. The same one-line-error rule applies: every expected
failure is a BulktagError that ``producer.cli.main`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.settings import Settings


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so `--chunk-size 0` is an error, not a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(redis_url=getattr(args, "redis_url", None))


def results_job(job_id: str, model: str | None, settings: Settings) -> str:
    """The job whose records ``bulktag results JOB`` prints: the current model's version.

    Says on stderr when it falls back to another model's records.
    """
    from producer.versions import pick_version
    from tasks.store import ResultStore, connect

    version = pick_version(ResultStore(connect(settings.redis_url)), job_id, model)
    if version.note:
        print(f"bulktag: note: {version.note}", file=sys.stderr)
    elif version.job != job_id:
        print(f"bulktag: records of {version.job} (model {version.model})", file=sys.stderr)
    return version.job


def cmd_beat(args: argparse.Namespace) -> int:
    from producer.beat import start_beat

    start_beat(_settings(args), schedules=args.schedules, state=args.state, loglevel=args.loglevel)
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from producer.schedules import load_schedules
    from tasks.errors import StoreUnavailable
    from tasks.source_index import SourceIndex
    from tasks.store import connect
    from worker.app import create_app

    settings = _settings(args)
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

    settings = _settings(args)
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

    index = SourceIndex(connect(_settings(args).redis_url), args.name)
    size = index.size()
    index.reset()
    print(f"schedule {args.name}: forgot {size} index entries; its next run tags everything")
    return 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    from producer.progress import ProgressView, summary_line
    from producer.versions import reprocess

    job = reprocess(
        args.job,
        new_job=args.new_job,
        chunk_size=args.chunk_size,
        settings=_settings(args),
        force=args.force,
    )
    model = job.store.job_field(job.id, "model")
    print(f"job {job.id}: {job.status().total} URIs of {args.job} enqueued for model {model}")
    if args.wait:
        with ProgressView() as on_progress:
            status = job.wait(timeout=args.timeout, on_progress=on_progress)
        print(summary_line(status))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tasks.model_registry import ModelRegistry
    from tasks.store import connect

    known = ModelRegistry(connect(_settings(args).redis_url)).known()
    for i, (model, at) in enumerate(known):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
        print(f"{'*' if i == 0 else ' '} {model}  last loaded {when}")
    if not known:
        print("no worker has loaded a model yet")
    return 0


def add_commands(sub: Any) -> None:
    """Register the operator commands on the ``bulktag`` subparsers."""
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

    p = sub.add_parser("reprocess", help="re-tag a finished job with the current model")
    p.add_argument("job")
    p.add_argument("--job", dest="new_job", help="id of the new job (default JOB.MODEL_ID)")
    p.add_argument("--chunk-size", type=positive_int, help="URIs per task (default: the job's)")
    p.add_argument("--force", action="store_true", help="even if the model already tagged it")
    p.add_argument("--wait", action="store_true", help="show progress until the job is done")
    p.add_argument("--timeout", type=float, help="with --wait: give up after SECONDS")
    p.set_defaults(func=cmd_reprocess)

    p = sub.add_parser("models", help="model ids workers have loaded; * marks the current one")
    p.set_defaults(func=cmd_models)
