"""The ``bulktag`` command line, one module per command group.

Every failure bulktag expects (bad arguments, Redis down, missing checkpoint) ends
as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import redis
import sqlalchemy as sa

from producer.cli import (
    find,
    jobs,
    models,
    processes,
    retention,
    run,
    schedules,
    sidecars,
    uploads,
    weights,
)
from producer.cli.common import EXIT_ERROR
from tasks.errors import BulktagError

# In the order ``bulktag --help`` lists them.
GROUPS = (run, processes, jobs, retention, find, sidecars, weights, schedules, models, uploads)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``bulktag`` parser: global flags, then each group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="bulktag", description="Batch image tagging with ResNet-18 over Redis + Celery."
    )
    parser.add_argument("--redis-url", help="broker: the work queue (env BULKTAG_REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
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
    except sa.exc.SQLAlchemyError as exc:  # the results database refused mid-command
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"bulktag: error: results database: {first}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, UnicodeError) as exc:  # files the user named: missing, unreadable, not UTF-8
        print(f"bulktag: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bulktag: interrupted", file=sys.stderr)
        return 130
