"""``python -m bench --sweep``: processes x threads x batch, end to end, per hot path.

Each configuration gets a fresh ``bulktag worker`` and a flushed Redis, so the numbers
differ only by the configuration (and by the machine's load, printed with them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import e2e, report


@dataclass(frozen=True)
class Config:
    label: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    chunk_size: int | None = None


CONFIGS = (
    Config("1 process x 2 lanes (auto on 2 cores)", ("--concurrency", "1", "--threads", "2")),
    Config(
        "1 process x 2 lanes, chunks of 64",
        ("--concurrency", "1", "--threads", "2"),
        chunk_size=64,
    ),
    Config("2 processes x 1 lane", ("--concurrency", "2", "--threads", "1")),
    Config(
        "2 processes x 1 lane, batch 8",
        ("--concurrency", "2", "--threads", "1", "--batch-size", "8"),
    ),
    Config(
        "1 process, 1 lane, forward on 2 torch threads",
        ("--concurrency", "1", "--threads", "2"),
        env={"BULKTAG_LANES": "1"},
    ),
)


def run_sweep(
    modes: dict[str, tuple[str, str]],
    weights: Path,
    corpus: Path,
    images: int,
    redis_url: str,
    workdir: Path,
) -> str:
    """Every config for every mode; returns the markdown section."""
    rows = []
    for name, (decode, precision) in modes.items():
        for i, config in enumerate(CONFIGS):
            env = {**e2e.worker_env(redis_url, weights, corpus), **config.env}
            args = [*config.args, "--decode", decode, "--precision", precision]
            load = report.load_average()
            run = e2e.run_worker(
                env,
                corpus,
                images,
                args,
                workdir / f"sweep-{name}-{i}.log",
                f"s{i}-{name}",
                config.chunk_size,
            )
            print(
                f"[sweep {name}] {config.label}: {run.first.per_second:.1f} img/s "
                f"(job {run.first.job_per_second:.1f}), {run.first.cpu_ms_per_image:.1f} "
                f"worker cpu-ms/img, RSS {run.peak_rss_mb:.0f} MB, "
                f"PSS {run.pss_mb:.0f} MB, ready {run.ready_seconds:.1f}s, load {load}",
                flush=True,
            )
            rows.append(
                [
                    f"{decode} {precision}",
                    config.label,
                    f"{run.first.per_second:.1f}",
                    f"{run.first.job_per_second:.1f}",
                    f"{run.first.cpu_ms_per_image:.1f}",
                    f"{run.peak_rss_mb:.0f} / {run.pss_mb:.0f}",
                    f"{run.ready_seconds:.1f}",
                    load.split(" / ")[0],
                ]
            )
    header = [
        "mode",
        "worker configuration",
        "end to end img/s",
        "job img/s",
        "worker CPU ms/img",
        "peak RSS / PSS MB",
        "ready s",
        "load (1 min)",
    ]
    return "\n".join(
        [
            "## Worker configuration (`python -m bench --sweep`)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')}, {images} images, "
            f"{report.machine()['cpu']}. A lane is one thread that decodes a group of "
            "images and forwards it with single-threaded torch (tasks/lanes.py); processes "
            "x lanes = cores in every row.",
            "",
            report.table(header, rows),
        ]
    )
