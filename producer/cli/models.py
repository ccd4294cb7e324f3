"""Model versions: ``bulktag reprocess`` and ``bulktag models``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from producer.cli.common import positive_int, settings_for


def cmd_reprocess(args: argparse.Namespace) -> int:
    from producer.progress import ProgressView, summary_line
    from producer.versions import reprocess

    job = reprocess(
        args.job,
        new_job=args.new_job,
        chunk_size=args.chunk_size,
        settings=settings_for(args),
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

    known = ModelRegistry(connect(settings_for(args).redis_url)).known()
    for i, (model, at) in enumerate(known):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
        print(f"{'*' if i == 0 else ' '} {model}  last loaded {when}")
    if not known:
        print("no worker has loaded a model yet")
    return 0


def add_commands(sub: Any) -> None:
    """Register this group's subcommands on ``sub``."""
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
