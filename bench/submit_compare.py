"""``bulktag submit`` of the same list into each results store, back to back.

Runs the CLI of another checkout (``--old``, e.g. the last commit before issue 12, where
jobs and URI lists lived in Redis) and of this one with SQLite and with a private
PostgreSQL (tests/postgres.py), ``--rounds`` times interleaved, against one private
redis-server, and prints URIs/s. Interleaving keeps a shared machine's load from
favouring one store. Figures: docs/BENCHMARKS.md, "Results database".

    python -m bench.submit_compare --old /path/to/old/checkout [--uris 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.producer import REPO, private_redis, write_list
from tests.postgres import PostgresServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.submit_compare", description=__doc__)
    parser.add_argument("--old", type=Path, required=True, help="checkout of the old store")
    parser.add_argument("--uris", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    n = args.uris
    with tempfile.TemporaryDirectory(prefix="bulktag-bench-") as name:
        tmp = Path(name)
        listing = tmp / "list.txt"
        write_list(listing, n)
        pg = PostgresServer().start()
        try:
            with private_redis(tmp) as url:
                for rnd in range(args.rounds):
                    plan = [
                        ("before (Redis store)", args.old, None),
                        ("SQLite", REPO, f"sqlite:///{tmp}/r{rnd}.db"),
                        ("PostgreSQL", REPO, pg.create_database(f"submit{rnd}")),
                    ]
                    for label, tree, results in plan:
                        redis.Redis.from_url(url).flushall()
                        env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
                        env.update(BULKTAG_REDIS_URL=url, PYTHONPATH=str(tree))
                        if results:
                            env["BULKTAG_RESULTS_URL"] = results
                        argv_ = [sys.executable, "-m", "producer.cli", "submit", f"@{listing}"]
                        started = time.perf_counter()
                        subprocess.run(
                            [*argv_, "--job", f"j{rnd}"],
                            cwd=tree, env=env, check=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        )  # fmt: skip
                        seconds = time.perf_counter() - started
                        print(
                            f"round {rnd + 1} {label}: {n / seconds:,.0f} URIs/s ({seconds:.1f} s)"
                        )
        finally:
            pg.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
