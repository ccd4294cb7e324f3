"""Worker images/s by source: the same photos from local disk, S3 (moto) and HTTP.

One real ``bulktag worker`` (one process) tags the same 60 camera-style JPEGs three
ways: a local folder, an ``s3://`` prefix on moto's S3 server, and ``http://`` URLs on
a local ``http.server``. The dedupe cache is emptied before every job so each one
runs every forward pass; rounds are interleaved and the best of each is reported.
Both servers are on loopback, so this measures bulktag's fetch overhead (signing,
parsing, the thread pool), not a WAN: on a real network the fetch pool overlaps
latency with compute. Figures go to the "Sources" section of docs/BENCHMARKS.md.

    python -m bench.sources [--images 60] [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import redis
from moto.server import ThreadedMotoServer

from bench.producer import BENCHMARKS, REPO, free_port, machine, private_redis
from bench.report import write_section
from producer.samples import build_corpus
from producer.submit import submit
from tasks import keys
from tasks.settings import Settings
from tasks.store import ResultStore

AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_ready(client: redis.Redis, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = client.smembers(keys.workers())
        if any(client.hget(k, "ready_at") for k in workers):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    sys.exit(f"worker did not start:\n{log.read_text()[-2000:]}")


def run_job(settings: Settings, client: redis.Redis, sources: list[str], job: str) -> float:
    """Empty the dedupe cache, submit, wait; return images/s from submit to done."""
    ResultStore(client).clear_cache()
    handle = submit(sources, job=job, settings=settings)
    status = handle.wait(timeout=600, poll=0.1)
    if status.error:
        sys.exit(f"job {job}: {status.error} errors; see `bulktag results {job}`")
    assert status.finished_at is not None
    return status.total / (status.finished_at - status.created_at)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sources", description=__doc__)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, don't edit docs")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bulktag-bench-") as tmp:
        work = Path(tmp)
        corpus = build_corpus(work / "photos", args.images, sizes=[(640, 480)], repeat_fraction=0)
        weights = Path(os.environ.get("BULKTAG_WEIGHTS", "")).expanduser()
        if not weights.is_file():
            from weights.fetch import write_untrained

            weights = work / "resnet18-untrained.pt"
            write_untrained(weights, seed=0)

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        moto_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        moto.start()
        moto_url = f"http://127.0.0.1:{moto_port}"
        # This process lists the bucket too (submit): moto's fake keys, never real ones.
        os.environ.update(AWS)
        s3 = boto3.session.Session().client("s3", endpoint_url=moto_url)
        s3.create_bucket(Bucket="photos")
        for path in corpus.unique:
            s3.put_object(Bucket="photos", Key=f"bench/{path.name}", Body=path.read_bytes())

        handler = functools.partial(QuietHandler, directory=str(corpus.root))
        web = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        web_base = f"http://127.0.0.1:{web.server_address[1]}"

        with private_redis(work) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("BULKTAG_", "AWS_"))}
            env.update(AWS)
            env.update(
                AWS_ENDPOINT_URL=moto_url,
                BULKTAG_REDIS_URL=url,
                BULKTAG_WEIGHTS=str(weights),
                BULKTAG_ALLOWED_ROOTS=str(work),
                BULKTAG_ALLOW_PRIVATE_NETWORKS="true",
            )
            log = work / "worker.log"
            with open(log, "wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "producer.cli", "worker", "--concurrency", "1"],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            client = redis.Redis.from_url(url, decode_responses=True)
            try:
                wait_ready(client, worker, log)
                settings = Settings(redis_url=url, s3_endpoint_url=moto_url)
                sources = {
                    "local disk": [str(corpus.root)],
                    "S3 (moto)": ["s3://photos/bench/"],
                    "HTTP (http.server)": [f"{web_base}/{p.name}" for p in corpus.unique],
                }
                best: dict[str, float] = {}
                for r in range(args.rounds):
                    for name, src in sources.items():
                        rate = run_job(settings, client, src, f"bench-{r}-{len(best)}-{name[:2]}")
                        best[name] = max(best.get(name, 0.0), rate)
                        print(f"round {r + 1} {name}: {rate:.1f} images/s", file=sys.stderr)
            finally:
                worker.terminate()
                worker.wait(30)
        web.shutdown()
        moto.stop()

    local = best["local disk"]
    rows = "\n".join(
        f"| {name} | {rate:.1f} | {rate / local:.2f}x |" for name, rate in best.items()
    )
    text = f"""
`python -m bench.sources` (`make bench-sources`): one `bulktag worker` process
(auto threads) tags the same {args.images} JPEGs at 640x480 from each source; the dedupe
cache is emptied before every job; best of {args.rounds} interleaved rounds, images/s
from submit to the last record. S3 is moto's server and HTTP a local `http.server`,
both on loopback and in the benchmark's own process, so the gap is fetch overhead
(request signing and parsing in the worker, plus the servers' CPU time on the same
cores; `http.server` also opens a new connection per image), not network latency.
Machine: {machine()}, shared with other work (load average {os.getloadavg()[0]:.1f});
measured {time.strftime("%Y-%m-%d")}.

| source | images/s | vs local disk |
|---|---:|---:|
{rows}
"""
    print(text)
    if not args.no_write:
        write_section(BENCHMARKS, "sources", "## Sources: worker images/s by source\n" + text)
        print(f"wrote the Sources section of {BENCHMARKS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
