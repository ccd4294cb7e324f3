"""``bulktag worker`` and ``bulktag api``: the long-running processes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from producer.cli.common import DECODE_MODES, DEVICES, PRECISIONS, auto_int, settings_for


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.run import start_worker

    settings = settings_for(args).with_overrides(
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


def cmd_api(args: argparse.Namespace) -> int:
    from producer.api import serve

    serve(args.host, args.port, settings_for(args))
    return 0


def add_commands(sub: Any) -> None:
    """Register this group's subcommands on ``sub``."""
    p = sub.add_parser("worker", help="run a worker: one preloaded ResNet-18 per process")
    p.add_argument(
        "--concurrency", type=auto_int, help="worker processes (default auto: one per core)"
    )
    p.add_argument(
        "--threads", type=auto_int, help="CPU threads per process (default auto: cores/processes)"
    )
    p.add_argument("--batch-size", type=int, help="most images per forward pass (default 16)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default, reference-exact), bf16 (CPU autocast), fp16 (cuda only), "
        "int8 (CPU, needs `bulktag weights calibrate`)",
    )
    p.add_argument(
        "--decode",
        choices=DECODE_MODES,
        help="exact (default, reference preprocessing) or fast (JPEG DCT scaling)",
    )
    p.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    p.add_argument("--weights", type=Path, help="checkpoint path (env BULKTAG_WEIGHTS)")
    p.add_argument("--hostname", help="Celery node name (default bulktag@HOST)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.add_argument("--queue", help="queue to consume (env BULKTAG_QUEUE; default bulktag)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (default 9808; 0 = off)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("api", help="serve the HTTP API and web dashboard (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.set_defaults(func=cmd_api)
