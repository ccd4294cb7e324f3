"""The ``bulktag`` command line: worker, submit, status, results, jobs, workers, weights.

Every failure bulktag expects (bad arguments, Redis down, missing checkpoint) ends
as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks.errors import BulktagError
from worker.settings import Settings

EXIT_ERROR = 1


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(redis_url=getattr(args, "redis_url", None))


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.run import start_worker

    settings = _settings(args).with_overrides(
        concurrency=args.concurrency,
        threads=args.threads,
        batch_size=args.batch_size,
        weights=args.weights,
    )
    start_worker(settings, hostname=args.hostname, loglevel=args.loglevel)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.progress import ProgressView, summary_line
    from producer.submit import submit

    settings = _settings(args)
    job = submit(args.sources, job=args.job, chunk_size=args.chunk_size, settings=settings)
    status = job.status()
    print(f"job {job.id}: {status.total} URIs enqueued in chunks of {status.chunk_size}")
    if not args.wait:
        return 0
    with ProgressView() as on_progress:
        status = job.wait(timeout=args.timeout, on_progress=on_progress)
    print(summary_line(status))
    return 0 if status.error == 0 or not args.strict else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    from producer.job import Job
    from producer.progress import fmt_eta

    st = Job.attach(args.job, _settings(args)).status()
    if args.json:
        print(json.dumps(st.to_dict()))
        return 0
    rate = f"{st.rate:.2f} images/s" if st.rate else "-"
    print(f"job       {st.job}\nstate     {st.state}")
    print(f"total     {st.total}\nok        {st.ok}\nerror     {st.error}")
    print(f"deduped   {st.deduped}\npending   {st.pending}")
    print(f"rate      {rate}\nETA       {fmt_eta(st.eta_seconds)}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from producer.export import write_csv, write_jsonl
    from producer.job import Job

    job = Job.attach(args.job, _settings(args))
    writer = write_csv if args.format == "csv" else write_jsonl
    if args.output in (None, "-"):
        writer(job.results(), sys.stdout)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            n = writer(job.results(), out)
        print(f"wrote {n} records to {args.output}", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from producer.job import Job

    Job.attach(args.job, _settings(args)).cancel()
    print(f"job {args.job} cancelled")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from producer.progress import summary_line
    from tasks.store import ResultStore, connect

    store = ResultStore(connect(_settings(args).redis_url))
    for job_id in store.list_jobs(args.limit):
        print(summary_line(store.status(job_id)))
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    from tasks.store import ResultStore, connect

    stats = ResultStore(connect(_settings(args).redis_url)).all_worker_stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for name, fields in stats.items():
            print(name, " ".join(f"{k}={v}" for k, v in sorted(fields.items())))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from weights import fetch

    dest = Path(args.output).expanduser() if args.output else Settings.from_env().weights
    if args.weights_cmd == "fetch":
        digest = fetch.fetch_official(dest)
    elif args.weights_cmd == "import":
        digest = fetch.import_official(Path(args.file), dest)
    elif args.weights_cmd == "dev-untrained":
        digest = fetch.write_untrained(dest, seed=args.seed)
        print(f"WARNING: {fetch.UNTRAINED_WARNING}", file=sys.stderr)
    else:  # show
        from weights.checkpoint import load_checkpoint

        ckpt = load_checkpoint(dest, Settings.from_env().weights_sha256)
        print(json.dumps({"path": str(dest), "model_id": ckpt.model_id, **ckpt.meta}, indent=2))
        return 0
    from weights.checkpoint import model_id_for

    print(f"wrote {dest} (sha256 {digest}, model id {model_id_for(digest)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulktag", description="Batch image tagging with ResNet-18 over Redis + Celery."
    )
    parser.add_argument("--redis-url", help="broker and results store (env BULKTAG_REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run a worker: one preloaded ResNet-18 per process")
    p.add_argument("--concurrency", type=int, help="worker processes (default: auto)")
    p.add_argument("--threads", type=int, help="torch threads per process (default: auto)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 32)")
    p.add_argument("--weights", type=Path, help="checkpoint path (env BULKTAG_WEIGHTS)")
    p.add_argument("--hostname", help="Celery node name (default bulktag@HOST)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("submit", help="enqueue images: folders, files, @list.txt, - (stdin)")
    p.add_argument("sources", nargs="+", help="folder, file, URI, @list.txt or -")
    p.add_argument("--job", help="job id (default: generated)")
    p.add_argument("--chunk-size", type=int, help="URIs per task (default 32)")
    p.add_argument("--wait", action="store_true", help="show progress until the job is done")
    p.add_argument("--timeout", type=float, help="with --wait: give up after SECONDS")
    p.add_argument("--strict", action="store_true", help="with --wait: exit 1 if any URI failed")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="a job's progress")
    p.add_argument("job")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("results", help="export a job's records")
    p.add_argument("job")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("-o", "--output", help="file to write (default stdout)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("cancel", help="stop a job: chunks not yet started are skipped")
    p.add_argument("job")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("jobs", help="recent jobs")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("workers", help="per-process worker counters (loads, forwards, chunks)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)

    p = sub.add_parser("weights", help="get, import, create or inspect model checkpoints")
    wsub = p.add_subparsers(dest="weights_cmd", required=True, metavar="ACTION")
    w = wsub.add_parser("fetch", help="download official IMAGENET1K_V1 weights (sha256-pinned)")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    w = wsub.add_parser("import", help="convert a downloaded resnet18-f37072fd.pth")
    w.add_argument("file")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    w = wsub.add_parser("dev-untrained", help="write seeded random weights (tests/offline)")
    w.add_argument("-o", "--output", required=True, help="checkpoint path")
    w.add_argument("--seed", type=int, default=0)
    w = wsub.add_parser("show", help="print a checkpoint's model id and metadata")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    p.set_defaults(func=cmd_weights)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BulktagError as exc:
        print(f"bulktag: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except TimeoutError as exc:
        print(f"bulktag: timeout: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `bulktag results JOB | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("bulktag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
