"""`make demo`: from nothing to a top-3 table, starting (and stopping) what it needs.

1. weights: BULKTAG_WEIGHTS if it verifies; else download the official ones; offline,
   write seeded UNTRAINED weights and say loudly that labels are meaningless.
2. Redis: BULKTAG_REDIS_URL if it answers; else a private redis-server on a free port.
3. A folder of camera-size photos made from scikit-image / scikit-learn sample images.
4. A real `bulktag worker`, then `bulktag submit --wait`, then the results table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from producer.samples import build_corpus  # noqa: E402
from tasks.errors import BulktagError  # noqa: E402
from tasks.settings import Settings  # noqa: E402
from weights.checkpoint import load_checkpoint  # noqa: E402
from weights.fetch import fetch_official, write_untrained  # noqa: E402

VAR = REPO / "var" / "demo"
BULKTAG = [sys.executable, "-m", "producer.cli"]
console = Console()


def get_weights(settings: Settings) -> Path:
    try:
        load_checkpoint(settings.weights, settings.weights_sha256)
        return settings.weights
    except BulktagError:
        pass
    console.print(f"[bold]weights:[/] trying the official download into {settings.weights}")
    try:
        fetch_official(settings.weights, timeout=15)
        return settings.weights
    except BulktagError as exc:
        console.print(f"[yellow]{exc}[/]")
    dev = VAR.parent / "weights" / "resnet18-untrained.pt"
    write_untrained(dev, seed=0)
    console.print(
        "[bold red]" + "!" * 78 + "\n"
        "  OFFLINE DEMO: using UNTRAINED random weights. The pipeline is real, but the\n"
        "  labels and scores below are MEANINGLESS. Get real ones with `bulktag weights fetch`.\n"
        + "!"
        * 78
    )
    return dev


def get_redis(settings: Settings) -> tuple[str, subprocess.Popen[bytes] | None]:
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2).ping()
        console.print(f"[bold]redis:[/] using {settings.redis_url}")
        return settings.redis_url, None
    except redis.RedisError:
        pass
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "demo: no Redis at BULKTAG_REDIS_URL and no redis-server binary. Install one with "
            "`sudo apt-get install redis-server`, or run `docker compose up -d redis` and set "
            "BULKTAG_REDIS_URL."
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(VAR / "redis"),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    console.print(f"[bold]redis:[/] started a private redis-server at {url}")
    return url, proc


def stop(proc: subprocess.Popen[bytes] | None, group: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    settings = Settings.from_env()
    n_images = int(os.environ.get("DEMO_IMAGES", "60"))
    weights = get_weights(settings)
    url, redis_proc = get_redis(settings)
    photos = VAR / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    console.print(f"[bold]photos:[/] writing {n_images} camera-size JPEGs to {photos}")
    build_corpus(photos, n_images, repeat_fraction=0.1, broken=3)
    env = {
        **os.environ,
        "BULKTAG_REDIS_URL": url,
        "BULKTAG_WEIGHTS": str(weights),
        "BULKTAG_ALLOWED_ROOTS": str(photos),
    }
    log = open(VAR / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [*BULKTAG, "worker"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    job = time.strftime("demo-%H%M%S")
    try:
        ready = wait_ready(url, worker)
        console.print(f"[bold]worker:[/] ready in {ready:.1f}s (log: {VAR / 'worker.log'})")
        subprocess.run(
            [*BULKTAG, "submit", str(photos), "--job", job, "--wait", "--timeout", "1800"],
            cwd=REPO,
            env=env,
            check=True,
        )
        out = subprocess.run(
            [*BULKTAG, "results", job],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        show_table([json.loads(line) for line in out.splitlines()], photos)
        subprocess.run([*BULKTAG, "status", job], cwd=REPO, env=env, check=True)
    finally:
        stop(worker, group=True)
        log.close()
        stop(redis_proc)
    return 0


def wait_ready(url: str, worker: subprocess.Popen[bytes], timeout: float = 120) -> float:
    """Seconds until a pool process of ``worker`` registered itself as ready."""
    client = redis.Redis.from_url(url, decode_responses=True)
    started = time.monotonic()
    since = time.time()
    while time.monotonic() - started < timeout:
        for key in client.smembers("bulktag:workers"):
            if float(client.hget(key, "ready_at") or 0) >= since:
                return time.monotonic() - started
        if worker.poll() is not None:
            sys.exit(f"demo: the worker exited; see {VAR / 'worker.log'}")
        time.sleep(0.2)
    sys.exit(f"demo: the worker was not ready after {timeout}s; see {VAR / 'worker.log'}")


def show_table(records: list[dict], root: Path) -> None:
    table = Table(title="bulktag demo: top-3 labels per image")
    table.add_column("image")
    table.add_column("status")
    for n in (1, 2, 3):
        table.add_column(f"#{n} label (score)")
    for rec in records:
        name = str(Path(rec["uri"]).relative_to(root))
        if rec["status"] == "ok":
            cells = [f"{t['label']} ({t['score']:.3f})" for t in rec["top3"]]
            table.add_row(name, "[green]ok", *cells)
        else:
            table.add_row(name, "[red]error", rec["error"][:60], "", "")
    console.print(table)
    if records and records[0].get("model"):
        console.print(f"model id: {records[0]['model']}")


if __name__ == "__main__":
    sys.exit(main())
