"""The ``bulktag`` command line: worker, submit, status, results, jobs, workers, weights.

Every failure bulktag expects (bad arguments, Redis down, missing checkpoint) ends
as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

from producer import cli_ops
from producer.cli_ops import positive_int
from tasks.errors import BulktagError
from tasks.settings import Settings

EXIT_ERROR = 1


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(redis_url=getattr(args, "redis_url", None))


def _auto_int(value: str) -> int:
    """``auto`` (0: let the worker size it from the core count) or a positive integer."""
    if value.lower() == "auto":
        return 0
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (or 'auto'), got {number}")
    return number


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.run import start_worker

    settings = _settings(args).with_overrides(
        concurrency=args.concurrency,
        threads=args.threads,
        batch_size=args.batch_size,
        weights=args.weights,
        queue=args.queue,
        metrics_port=args.metrics_port,
        precision=args.precision,
        decode=args.decode,
        device=args.device,
    )
    start_worker(settings, hostname=args.hostname, loglevel=args.loglevel)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from producer.progress import EnumerationView, ProgressView, summary_line
    from producer.submit import submit

    settings = _settings(args)
    with EnumerationView() as view:
        job = submit(
            args.sources,
            job=args.job,
            chunk_size=args.chunk_size,
            settings=settings,
            on_chunk=view.on_chunk,
            max_queued=args.max_queued,
            on_wait=view.on_wait,
        )
    status = job.status()
    print(f"job {job.id}: {status.total} URIs enqueued in chunks of {status.chunk_size}")
    if not args.wait:
        return 0
    with ProgressView() as on_progress:
        status = job.wait(timeout=args.timeout, on_progress=on_progress)
    print(summary_line(status))
    return 0 if status.error == 0 or not args.strict else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    from producer.health import health_lines, job_health
    from producer.progress import fmt_eta
    from tasks.store import ResultStore, connect
    from worker.app import create_app

    settings = _settings(args)
    st, health = job_health(
        ResultStore(connect(settings.redis_url)),
        create_app(settings),
        args.job,
        queue=settings.queue,
        visibility_timeout=settings.visibility_timeout,
        stall_after=args.stall_after,
    )
    if args.json:
        print(json.dumps({**st.to_dict(), "health": health.to_dict()}))
        return 0
    rate = f"{st.rate:.2f} images/s" if st.rate else "-"
    print(f"job       {st.job}\nstate     {st.state}")
    print(f"total     {st.total}\nok        {st.ok}\nerror     {st.error}")
    print(f"deduped   {st.deduped}\npending   {st.pending}")
    print(f"rate      {rate}\nETA       {fmt_eta(st.eta_seconds)}")
    if st.submit_error:
        print(f"submit    {st.submit_error}")
    print("\n".join(health_lines(health)))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from producer.export import write_csv, write_jsonl
    from producer.job import Job

    settings = _settings(args)
    job = Job.attach(cli_ops.results_job(args.job, args.model, settings), settings)
    writer = write_csv if args.format == "csv" else write_jsonl
    if args.output in (None, "-"):
        writer(job.results(), sys.stdout)
    elif args.output.startswith("s3://"):
        from producer.s3 import upload_export

        kind = "text/csv" if args.format == "csv" else "application/x-ndjson"
        n = upload_export(args.output, lambda out: writer(job.results(), out), settings, kind)
        print(f"wrote {n} records to {args.output}", file=sys.stderr)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            n = writer(job.results(), out)
        print(f"wrote {n} records to {args.output}", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from producer.job import Job

    prior = Job.attach(args.job, _settings(args)).cancel()
    if prior in ("done", "cancelled"):
        print(f"job {args.job} is already {prior}; nothing to cancel")
    else:
        print(f"job {args.job} cancelled: chunks not yet started are skipped")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from producer.job import Job
    from producer.progress import ProgressView, summary_line
    from producer.resubmit import retry_job

    settings = _settings(args)
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


def cmd_api(args: argparse.Namespace) -> int:
    from producer.api import serve

    serve(args.host, args.port, _settings(args))
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
    elif args.weights_cmd == "calibrate":
        return _calibrate(args, dest)
    else:  # show
        from weights.checkpoint import load_checkpoint

        ckpt = load_checkpoint(dest, Settings.from_env().weights_sha256)
        print(json.dumps({"path": str(dest), "model_id": ckpt.model_id, **ckpt.meta}, indent=2))
        return 0
    from weights.checkpoint import model_id_for

    print(f"wrote {dest} (sha256 {digest}, model id {model_id_for(digest)})")
    return 0


def _calibration_files(paths: Sequence[str], count: int) -> list[Path]:
    """Up to ``count`` image files from files and folders, spread evenly over them."""
    from producer.sources import looks_like_image

    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and looks_like_image(p))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"bulktag: error: no such file or folder: {path}")
    step = max(1, len(files) // count)
    return files[::step][:count]


def _calibrate(args: argparse.Namespace, weights: Path) -> int:
    """``bulktag weights calibrate``: observe activations on photos, save for int8 workers."""
    from tasks.quantize import calibrate_images, calibration_path, write_calibration
    from weights.checkpoint import load_checkpoint

    settings = Settings.from_env()
    ckpt = load_checkpoint(weights, settings.weights_sha256)
    out = Path(args.calibration).expanduser() if args.calibration else calibration_path(weights)
    if args.images:
        files = _calibration_files(args.images, args.count)
        source = f"{len(files)} files from {', '.join(args.images)}"
        photos: Iterator[bytes] = (f.read_bytes() for f in files)
    else:
        try:
            from producer.samples import calibration_photos
        except ImportError:
            raise SystemExit(
                "bulktag: error: the default calibration photos need scikit-image "
                "(pip install -e '.[dev]'); or pass --images with photos like yours"
            ) from None
        source = f"{args.count} packaged sample photos (producer.samples, seed 1)"
        photos = iter(calibration_photos(args.count))
    print(f"calibrating int8 activations for {ckpt.model_id} on {source} ...", flush=True)
    observers, used, skipped = calibrate_images(ckpt, photos, max_pixels=settings.max_pixels)
    cal = write_calibration(out, ckpt, observers, source=source, images=used)
    note = f", {skipped} undecodable skipped" if skipped else ""
    print(
        f"wrote {out} ({used} images{note}); workers with --precision int8 tag as "
        f"{ckpt.model_id}+int8-{cal.short_id}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulktag", description="Batch image tagging with ResNet-18 over Redis + Celery."
    )
    parser.add_argument("--redis-url", help="broker and results store (env BULKTAG_REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run a worker: one preloaded ResNet-18 per process")
    p.add_argument(
        "--concurrency", type=_auto_int, help="worker processes (default auto: one per core)"
    )
    p.add_argument(
        "--threads", type=_auto_int, help="CPU threads per process (default auto: cores/processes)"
    )
    p.add_argument("--batch-size", type=int, help="most images per forward pass (default 16)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="fp32 (default, reference-exact), bf16 (CPU autocast), fp16 (cuda only), "
        "int8 (CPU, needs `bulktag weights calibrate`)",
    )
    p.add_argument(
        "--decode",
        choices=["exact", "fast"],
        help="exact (default, reference preprocessing) or fast (JPEG DCT scaling)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="cpu (default) or cuda")
    p.add_argument("--weights", type=Path, help="checkpoint path (env BULKTAG_WEIGHTS)")
    p.add_argument("--hostname", help="Celery node name (default bulktag@HOST)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.add_argument("--queue", help="queue to consume (env BULKTAG_QUEUE; default bulktag)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (default 9808; 0 = off)")
    p.set_defaults(func=cmd_worker)

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
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
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

    p = sub.add_parser("workers", help="per-process worker counters (loads, forwards, chunks)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)

    p = sub.add_parser("api", help="serve the HTTP API and web dashboard (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.set_defaults(func=cmd_api)

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
    w = wsub.add_parser(
        "calibrate", help="measure activation ranges for --precision int8 (writes WEIGHTS.int8)"
    )
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    w.add_argument(
        "--images", nargs="+", help="photos or folders like yours (default: packaged samples)"
    )
    w.add_argument("--count", type=positive_int, default=48, help="images to use (default 48)")
    w.add_argument("--calibration", help="file to write (default: the checkpoint path + .int8)")
    w = wsub.add_parser("show", help="print a checkpoint's model id and metadata")
    w.add_argument("-o", "--output", help="checkpoint path (default BULKTAG_WEIGHTS)")
    p.set_defaults(func=cmd_weights)
    cli_ops.add_commands(sub)  # beat, schedule, reprocess, models
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
    except redis.RedisError as exc:  # Redis went away or refused mid-command (OOM, ...)
        print(f"bulktag: error: Redis: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, UnicodeError) as exc:  # files the user named: missing, unreadable, not UTF-8
        print(f"bulktag: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bulktag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
