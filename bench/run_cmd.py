"""``python -m bench.run_cmd``: ``bulktag run`` on the demo corpus, cold then warm.

Two runs of the same folder under a fresh HOME, so the first starts with an empty
dedupe cache and the second finds the first's results in the saved private Redis:
wall time of the whole command (interpreter start to exit, Redis and worker start and
stop included), and start to first result (as the command reports it). Writes the
"bulktag run" section of docs/BENCHMARKS.md with ``--write``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import load_average, machine, table, write_section
from producer.samples import build_corpus

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "docs" / "BENCHMARKS.md"
DEFAULT_IMAGES = 60  # the demo's corpus: a third each 640x480, 1920x1080, 4000x3000


@dataclass
class Run:
    label: str
    wall: float  # the whole command, as a user waits for it
    first_result: float  # command start (in its own clock) to the first record stored
    images: int
    deduped: int


def run_once(label: str, photos: Path, out: Path, env: dict[str, str], extra: list[str]) -> Run:
    """One ``bulktag run`` of ``photos``; its figures from the wall clock and its summary."""
    command = [sys.executable, "-m", "producer.cli", "run", str(photos), "-o", str(out), *extra]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench.run_cmd: {label} run failed:\n{proc.stderr[-3000:]}")
    summary = re.search(
        r"bulktag run: (\d+) images in [\d.]+ s \(first result after ([\d.]+) s; "
        r"ok \d+, error \d+, deduped (\d+)\)",
        proc.stderr,
    )
    if summary is None:
        raise SystemExit(f"bench.run_cmd: no summary line in:\n{proc.stderr[-3000:]}")
    images, first, deduped = summary.groups()
    return Run(label, wall, float(first), int(images), int(deduped))


def report(runs: list[Run], images: int, extra: list[str], loads: tuple[str, str]) -> str:
    cold = runs[0]
    rows = [
        [
            r.label,
            str(r.images),
            str(r.deduped),
            f"{r.wall:.1f}",
            f"{r.first_result:.1f}",
            f"{r.wall / cold.wall:.2f}x",
        ]
        for r in runs
    ]
    info = machine()
    flags = "".join(f" {flag}" for flag in extra)
    return "\n".join(
        [
            "## bulktag run: one command, cold and warm",
            "",
            f"`python -m bench.run_cmd --images {images}{flags}` (in `make bench`): "
            "`bulktag run PHOTOS -o FILE` twice under a fresh HOME, measured "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The first run starts "
            "with an empty dedupe cache; the second finds it in the private Redis the "
            "first one saved (`~/.cache/bulktag/run/redis`). Wall time is the whole "
            "command as a user waits for it: interpreter start, redis-server and worker "
            "start, tagging, writing the file, stopping both. First result: from the "
            "command's start to the first record stored.",
            "",
            f"- Corpus: the demo's: {images} camera-size JPEGs from producer.samples (a third "
            "each 640x480, 1920x1080, 4000x3000; 10% byte-identical repeats) and 3 broken "
            "files. Weights: seeded untrained ResNet-18.",
            f"- CPU: {info['cpu']}; {info['software']}",
            f"- Load average (1/5/15 min) before: {loads[0]}; after: {loads[1]}. The 2 cores "
            "are shared with other work (other agents' builds and tests ran meanwhile), "
            "so the figures are upper bounds for an idle machine.",
            "",
            table(
                ["run", "images", "deduped", "wall s", "first result s", "wall vs cold"],
                rows,
            ),
            "",
            "- The warm run forwards nothing: every ok image is `deduped`. `bulktag run` "
            "reads and hashes the local files itself and answers the cached ones while the "
            "worker is still starting (`producer/cache_answers.py`); in a mostly cached batch "
            "it also gives the broken files their error records, with the worker's own decode "
            "checks. So the job ends before the worker has loaded its model, and what remains "
            "is interpreter start, starting and stopping Redis and the worker, and reading "
            "and hashing the files. The cold run's first result waits for the worker's "
            "start-up (its processes import torch and load the model), which the load on "
            "the shared cores stretches most.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    parser.add_argument("run_args", nargs="*", help="extra `bulktag run` flags, after --")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        root = Path(tmp)
        print(f"building a {args.images}-image corpus ...", flush=True)
        build_corpus(root / "photos", args.images, repeat_fraction=0.1, broken=3)
        weights = root / "resnet18-untrained.pt"
        from weights.fetch import write_untrained

        write_untrained(weights, seed=0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
        env.update(HOME=str(root / "home"), BULKTAG_WEIGHTS=str(weights))
        before = load_average()
        runs = []
        for label in ("cold (empty cache)", "warm (same folder again)"):
            runs.append(run_once(label, root / "photos", root / "out.jsonl", env, args.run_args))
            print(runs[-1], flush=True)
        after = load_average()
    text = report(runs, args.images, args.run_args, (before, after))
    print(text)
    if args.write:
        write_section(BENCHMARKS, "run", text)
        print(f"wrote the bulktag run section of {BENCHMARKS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
