"""`make demo`: from nothing to a top-3 table, a thin wrapper over `bulktag run`.

1. weights: BULKTAG_WEIGHTS if it verifies; else download the official ones; offline,
   write seeded UNTRAINED weights and say loudly that labels are meaningless.
2. A folder of camera-size photos made from scikit-image / scikit-learn sample images.
3. `bulktag run PHOTOS -o var/demo/results.jsonl`: a private redis-server and a worker,
   started and stopped by the command (or the Redis at BULKTAG_REDIS_URL if it answers).
4. The results as a top-3 table. A second `make demo` is served from the dedupe cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis
from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from producer.run_table import show_table  # noqa: E402
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


def redis_flags() -> list[str]:
    """``--redis-url`` when BULKTAG_REDIS_URL names a Redis that answers; else none
    (``bulktag run`` then starts, and stops, a private redis-server)."""
    url = os.environ.get("BULKTAG_REDIS_URL")
    if not url:
        return []
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        return []
    console.print(f"[bold]redis:[/] using {url}")
    return ["--redis-url", url]


def main() -> int:
    settings = Settings.from_env()
    n_images = int(os.environ.get("DEMO_IMAGES", "60"))
    weights = get_weights(settings)
    photos = VAR / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    console.print(f"[bold]photos:[/] writing {n_images} camera-size JPEGs to {photos}")
    build_corpus(photos, n_images, repeat_fraction=0.1, broken=3)
    results = VAR / "results.jsonl"
    job = time.strftime("demo-%Y%m%d-%H%M%S")
    command = [*BULKTAG, "run", str(photos), "--job", job, "-o", str(results), *redis_flags()]
    console.print(f"[bold]run:[/] bulktag run {photos} --job {job} -o {results}")
    env = {**os.environ, "BULKTAG_WEIGHTS": str(weights)}
    proc = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # `bulktag run` got the same Ctrl-C: let it stop what it started
        code = proc.wait()
    if code != 0:
        return code
    records = [json.loads(line) for line in results.read_text().splitlines()]
    show_table(records, console, photos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
