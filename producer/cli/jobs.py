"""Job commands: submit, status, results, cancel, retry, jobs, workers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from producer.cli.common import EXIT_ERROR, positive_int, settings_for
from tasks.settings import Settings


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.progress import EnumerationView, ProgressView, summary_line
    from producer.selection import Selection
    from producer.submit import submit

    settings = settings_for(args)
    selection = Selection(args.include_ext or ())
    with EnumerationView() as view:
        job = submit(
            args.sources,
            job=args.job,
            chunk_size=args.chunk_size,
            settings=settings,
            on_chunk=view.on_chunk,
            max_queued=args.max_queued,
            on_wait=view.on_wait,
            selection=selection,
            priority=args.priority,
        )
    status = job.status()
    print(f"job {job.id}: {status.total} URIs enqueued in chunks of {status.chunk_size}")
    if skipped := selection.summary():
        print(skipped)
    if not args.wait:
        return 0
    from producer.consumers import ConsumerWatch
    from worker.app import create_app

    progress_view = ProgressView()

    def note(message: str) -> None:  # one line above the bar (or alone off a terminal)
        progress_view.console.print(
            f"bulktag: {message}", markup=False, highlight=False, soft_wrap=True
        )

    watch = ConsumerWatch(create_app(settings), settings.queue, note)
    with progress_view as on_progress:

        def progress(status: Any) -> None:
            on_progress(status)
            watch(status)

        status = job.wait(timeout=args.timeout, on_progress=progress, on_outage=note)
    print(summary_line(status))
    return 0 if status.error == 0 or not args.strict else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    from producer.health import health_lines, job_health
    from producer.progress import fmt_eta
    from tasks.store import open_store
    from worker.app import create_app

    settings = settings_for(args)
    st, health = job_health(
        open_store(settings),
        create_app(settings),
        args.job,
        queue=settings.queue,
        visibility_timeout=settings.visibility_timeout,
        stall_after=args.stall_after,
        heartbeat_ttl=settings.heartbeat_ttl,
    )
    if args.json:
        print(json.dumps({**st.to_dict(), "health": health.to_dict()}))
        return 0
    rate = f"{st.rate:.2f} images/s" if st.rate else "-"
    print(f"job       {st.job}\nstate     {st.state}")
    print(f"total     {st.total}\nok        {st.ok}\nerror     {st.error}")
    print(f"deduped   {st.deduped}\npending   {st.pending}")
    if st.skipped:
        print(f"skipped   {st.skipped} (files that are not images: not in the job)")
    print(f"rate      {rate}\nETA       {fmt_eta(st.eta_seconds)}")
    if st.submit_error:
        print(f"submit    {st.submit_error}")
    print("\n".join(health_lines(health)))
    return 0


def results_job(job_id: str, model: str | None, settings: Settings) -> str:
    """The job whose records ``bulktag results JOB`` prints: the current model's version.

    Says on stderr when it falls back to another model's records.
    """
    from producer.versions import pick_version
    from tasks.store import open_store

    version = pick_version(open_store(settings), job_id, model)
    if version.note:
        print(f"bulktag: note: {version.note}", file=sys.stderr)
    elif version.job != job_id:
        print(f"bulktag: records of {version.job} (model {version.model})", file=sys.stderr)
    return version.job


def cmd_results(args: argparse.Namespace) -> int:
    from producer.export import export_records
    from producer.job import Job

    settings = settings_for(args)
    job = Job.attach(results_job(args.job, args.model, settings), settings)
    n = export_records(job.results(), args.format, args.output, settings)
    if args.output not in (None, "-"):
        print(f"wrote {n} records to {args.output}", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from producer.job import Job

    prior = Job.attach(args.job, settings_for(args)).cancel()
    if prior in ("done", "cancelled"):
        print(f"job {args.job} is already {prior}; nothing to cancel")
    else:
        print(f"job {args.job} cancelled: chunks not yet started are skipped")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from producer.job import Job
    from producer.progress import ProgressView, summary_line
    from producer.resubmit import retry_job

    settings = settings_for(args)
    rep = retry_job(
        args.job,
        errors=args.errors,
        pending=args.pending,
        chunk_size=args.chunk_size,
        settings=settings,
    )
    print(
        f"job {rep.job} retry round {rep.round}: {rep.errors} error records reopened, "
        f"{rep.pending} pending URIs re-enqueued, in {rep.chunks} chunks"
    )
    if not args.wait:
        return 0
    with ProgressView() as on_progress:
        status = Job.attach(args.job, settings).wait(on_progress=on_progress)
    print(summary_line(status))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from producer.progress import summary_line
    from tasks.store import open_store

    store = open_store(settings_for(args))
    for job_id in store.list_jobs(args.limit):
        print(summary_line(store.status(job_id)))
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    from producer.liveness import with_liveness
    from tasks.store import ResultStore, connect

    settings = settings_for(args)
    stats = with_liveness(ResultStore(connect(settings.redis_url)), settings.heartbeat_ttl)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for name, fields in stats.items():
            print(name, " ".join(f"{k}={v}" for k, v in sorted(fields.items())))
    return 0


def add_commands(sub: Any) -> None:
    """Register this group's subcommands on ``sub``."""
    p = sub.add_parser("submit", help="enqueue images: folders, files, @list.txt, - (stdin)")
    p.add_argument("sources", nargs="+", help="folder, file, URI, @list.txt or -")
    p.add_argument("--job", help="job id (default: generated)")
    p.add_argument("--chunk-size", type=positive_int, help="URIs per task (default 32)")
    p.add_argument("--wait", action="store_true", help="show progress until the job is done")
    p.add_argument("--timeout", type=float, help="with --wait: give up after SECONDS")
    p.add_argument("--strict", action="store_true", help="with --wait: exit 1 if any URI failed")
    p.add_argument(
        "--max-queued",
        type=int,
        metavar="N",
        help="backpressure: wait while N chunks are queued (env BULKTAG_MAX_QUEUED; 0 = no cap)",
    )
    p.add_argument(
        "--include-ext",
        action="append",
        metavar="EXT",
        help="also take files ending in EXT from folders and S3 prefixes, e.g. --include-ext "
        "dat (repeatable or comma list; files that are not images become error records)",
    )
    p.add_argument(
        "--priority",
        choices=["normal", "high"],
        default="normal",
        help="high: the interactive lane workers take before bulk work (default normal)",
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="a job's progress")
    p.add_argument("job")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--stall-after",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="no new result for this long: judge the job slow or stuck (default 120)",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("results", help="export a job's records")
    p.add_argument("job")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    p.add_argument("-o", "--output", help="file or s3://bucket/key to write (default stdout)")
    p.add_argument("--model", help="records by this model id (default: the current model)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("cancel", help="stop a job: chunks not yet started are skipped")
    p.add_argument("job")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("retry", help="enqueue a job's failed (--errors) or pending URIs again")
    p.add_argument("job")
    p.add_argument("--errors", action="store_true", help="URIs that ended as error")
    p.add_argument("--pending", action="store_true", help="URIs with no record (lost messages)")
    p.add_argument("--chunk-size", type=positive_int, help="URIs per task (default: the job's)")
    p.add_argument("--wait", action="store_true", help="show progress until the job is done")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("jobs", help="recent jobs")
    p.add_argument("--limit", type=positive_int, default=20)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser(
        "workers", help="worker processes: alive/gone/stopped, counters (loads, forwards, chunks)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)
