"""``python -m bench``: measure bulktag's throughput and write docs/BENCHMARKS.md.

Stages, all in one run so their ratios share the machine's conditions:
(1) seed-style baseline, one image at a time (also the fp32 reference top-3);
(2) the model alone; (3) the in-process decode+model limit; (4) end to end through a
private redis-server and a real ``bulktag worker``; (5) the same corpus submitted again
(every image deduplicated). (2)-(5) run for the exact fp32 hot path and the fastest one.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import e2e, inprocess, report, sweep
from producer.samples import build_corpus
from tasks.lanes import plan_groups
from tasks.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = 480  # ~4 minutes on the 2-core dev machine, a third of them 12 MP
MODES = {"exact": ("exact", "fp32"), "fast": ("fast", "bf16"), "int8": ("fast", "int8")}


@dataclass
class ModeResult:
    name: str
    decode: str
    precision: str
    lanes: int
    group: int
    model_only: inprocess.Rate
    limit: inprocess.Rate  # unique contents decoded + forwarded
    limit_corpus_rate: float  # the same time, counted over every corpus image
    run: e2e.WorkerRun
    agreement: report.Agreement


def corpus_files(root: Path, images: int) -> tuple[list[Path], list[Path]]:
    """(unique, repeats) of a cached corpus, built on first use."""
    done = root / ".complete"
    if not done.exists():
        print(f"building a {images}-image corpus in {root} ...", flush=True)
        corpus = build_corpus(root, images)
        done.write_text(str(images))
        return corpus.unique, corpus.repeats
    return sorted(root.glob("img_*.jpg")), sorted((root / "repeats").glob("*.jpg"))


def dev_weights(path: Path) -> Path:
    """Seeded random-initialised weights: reproducible, offline (labels meaningless)."""
    if not path.exists():
        from weights.fetch import write_untrained

        write_untrained(path, seed=0)
    return path


def ensure_calibration(weights: Path) -> None:
    """The int8 mode's calibration file: ``bulktag weights calibrate``'s default photos.

    Those are crops of the same packaged photos the corpus is cut from, drawn with
    another seed: representative data, as an operator would calibrate on their own.
    """
    from tasks.quantize import calibration_path

    if not calibration_path(weights).exists():
        import subprocess

        cmd = [sys.executable, "-m", "producer.cli", "weights", "calibrate", "-o", str(weights)]
        subprocess.run(cmd, check=True, cwd=REPO)


def measure_mode(
    name: str,
    args: argparse.Namespace,
    weights: Path,
    corpus: Path,
    unique: list[Path],
    total: int,
    reference: inprocess.TopK,
    redis_url: str,
) -> ModeResult:
    decode, precision = MODES[name]
    worker_args = [
        "--concurrency",
        args.concurrency,
        "--threads",
        args.threads,
        "--decode",
        decode,
        "--precision",
        precision,
        *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
    ]
    env = e2e.worker_env(redis_url, weights, corpus)
    settings = Settings.from_env({**env, **e2e._flag_env(worker_args)})
    if args.batch_size:
        settings = settings.with_overrides(batch_size=args.batch_size)
    cores = settings.effective_concurrency * settings.effective_threads
    group = len(plan_groups(settings.chunk_size, settings.effective_lanes, 10**9)[0])
    group = min(group, settings.batch_size)

    tagger = inprocess.load_tagger(weights, precision, decode)
    model_rate = inprocess.model_only(tagger, cores, group)
    print(f"[{name}] (2) model only: {model_rate.per_second:.1f} img/s", flush=True)
    del tagger
    gc.collect()
    contents = [(str(p), p.read_bytes()) for p in unique]
    limit = inprocess.decode_and_model_processes(
        weights,
        precision,
        decode,
        contents,
        processes=settings.effective_concurrency,
        lanes=settings.effective_lanes,
        batch_size=group,
        max_pixels=settings.max_pixels,
    )
    limit_corpus = total / limit.seconds
    print(
        f"[{name}] (3) in-process limit: {limit.per_second:.1f} unique img/s "
        f"= {limit_corpus:.1f} corpus img/s",
        flush=True,
    )
    del contents
    gc.collect()

    log = args.workdir / f"worker-{name}.log"
    run = e2e.run_worker(env, corpus, total, worker_args, log, name)
    print(
        f"[{name}] (4) end to end: {run.first.per_second:.1f} img/s "
        f"(job {run.first.job_per_second:.1f}); (5) resubmit {run.again.per_second:.1f} img/s "
        f"(job {run.again.job_per_second:.1f}); ready {run.ready_seconds:.2f}s, "
        f"peak RSS {run.peak_rss_mb:.0f} MB, PSS {run.pss_mb:.0f} MB",
        flush=True,
    )
    agree = report.agreement(reference, run.first.top3, [str(p) for p in unique])
    print(f"[{name}] agreement top-1/top-3 {agree}, max score diff {agree.max_score_diff:.1e}")
    return ModeResult(
        name,
        decode,
        precision,
        cores,
        group,
        model_rate,
        limit,
        limit_corpus,
        run,
        agree,
    )


def render(
    results: list[ModeResult],
    baseline: inprocess.Rate,
    args: argparse.Namespace,
    n_unique: int,
    loads: tuple[str, str],
    seconds: float,
) -> str:
    """The markdown section: machine, corpus, the side-by-side table, notes."""
    info = report.machine()
    head = ["stage (images/s unless noted)"] + [
        f"`--decode {r.decode} --precision {r.precision}`" for r in results
    ]

    def row(label: str, cell: object) -> list[str]:
        return [label] + [cell(r) if callable(cell) else str(cell) for r in results]

    rows = [
        row("(1) seed-style baseline: one image at a time", f"{baseline.per_second:.1f}"),
        row(
            "(2) model only (lanes x batch)",
            lambda r: f"{r.model_only.per_second:.1f} ({r.lanes} x {r.group})",
        ),
        row(
            "(3) in-process limit: worker's processes x lanes, no Redis (unique img/s)",
            lambda r: f"{r.limit_corpus_rate:.1f} ({r.limit.per_second:.1f})",
        ),
        row(
            "(4) end to end: `bulktag submit --wait` (job time)",
            lambda r: f"**{r.run.first.per_second:.1f}** ({r.run.first.job_per_second:.1f})",
        ),
        row(
            "(5) same corpus again, all deduplicated (job time)",
            lambda r: f"{r.run.again.per_second:.1f} ({r.run.again.job_per_second:.1f})",
        ),
        row(
            "(4) / (1)",
            lambda r: f"**{r.run.first.per_second / baseline.per_second:.2f}x**",
        ),
        row("(4) / (3)", lambda r: f"**{r.run.first.per_second / r.limit_corpus_rate:.0%}**"),
        row(
            "(5) / (4) (job time)",
            lambda r: (
                f"{r.run.again.per_second / r.run.first.per_second:.1f}x "
                f"({r.run.again.job_per_second / r.run.first.job_per_second:.1f}x)"
            ),
        ),
        row(
            "CPU ms per corpus image: (1) / (3) / (4) worker",
            lambda r: (
                f"{baseline.cpu_ms_per_image:.0f} / "
                f"{1000 * r.limit.cpu_seconds / r.run.first.images:.1f} / "
                f"{r.run.first.cpu_ms_per_image:.1f}"
            ),
        ),
        row("top-1 / top-3 agreement with the fp32 reference", lambda r: str(r.agreement)),
        row("largest top-3 score difference", lambda r: f"{r.agreement.max_score_diff:.1e}"),
        row(
            "worker peak RSS, sum over its processes (PSS at end)",
            lambda r: (
                f"{r.run.peak_rss_mb:.0f} MB ({r.run.pss_mb:.0f} MB), {r.run.processes} processes"
            ),
        ),
        row("`bulktag worker` to ready", lambda r: f"{r.run.ready_seconds:.2f} s"),
        row("model id in the records", lambda r: f"`{r.run.first.model}`"),
    ]
    cmd = f"make bench  # python -m bench --images {args.images}"
    return "\n".join(
        [
            "## Throughput (`make bench`)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} in one run of `{cmd}` "
            f"({seconds / 60:.1f} min). Load average (1/5/15 min) before: {loads[0]}; "
            f"after: {loads[1]}.",
            "",
            f"- CPU: {info['cpu']}; memory {info['memory']}",
            f"- Software: {info['software']}",
            f"- Corpus: {args.images} camera-size JPEGs (quality 90) from producer.samples, "
            f"a third each 640x480, 1920x1080, 4000x3000; {args.images - n_unique} are "
            "byte-identical repeats. Weights: seeded random-initialised ResNet-18 "
            "(`bulktag weights dev-untrained`): small logit margins, so agreement figures "
            "are pessimistic.",
            f"- Worker: `bulktag worker --concurrency {args.concurrency} --threads "
            f"{args.threads}` plus the mode's flags; chunks of 32 (the default).",
            "",
            report.table(head, rows),
            "",
            "How to read it: (1) is the seed's pipeline (PIL full decode, the torchvision "
            "preset, a batch-1 fp32 forward with torch's default threads, per file, no "
            "dedupe); its top-3 are the reference for the agreement rows. (2) and (3) run "
            "the worker's own code with no Redis or Celery: (2) in one process, (3) in as "
            "many forked processes and lanes as the worker runs, each loading its own model, "
            "over the unique images held in memory as one stream; (3) counts the "
            "corpus images the unique ones stand for, as (4) does. int8 is calibrated by "
            "`bulktag weights calibrate` on its default photos. (4) and (5) are wall "
            "times of the `bulktag submit --wait` command, Python start-up and its "
            "progress polling included; job time runs from the job's creation in Redis to "
            "its last record. CPU ms: user+system time per corpus image, which other "
            "processes on the machine disturb less than wall time. Memory: VmHWM (peak "
            "RSS) of each process of the worker summed, which counts the pages the Celery "
            "parent shares with its children once per process; PSS splits shared pages.",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="corpus size")
    parser.add_argument(
        "--modes", default="exact,fast,int8", help="comma list of exact, fast (bf16), int8"
    )
    parser.add_argument("--concurrency", default="auto", help="worker processes")
    parser.add_argument("--threads", default="auto", help="worker threads per process")
    parser.add_argument("--batch-size", type=int, help="worker --batch-size (default: its own)")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: seeded untrained)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--sweep", action="store_true", help="compare worker configurations instead"
    )
    parser.add_argument(
        "--skip-formats", action="store_true", help="skip the per-format decode stage"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = report.load_average()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"bench: load average {load_before}; {report.machine()['cpu']}", flush=True)
    weights = args.weights or dev_weights(args.workdir / "resnet18-untrained-seed0.pt")
    if "int8" in args.modes.split(","):
        ensure_calibration(weights)
    corpus = args.workdir / f"corpus-{args.images}"
    unique, repeats = corpus_files(corpus, args.images)
    files = sorted(unique + repeats)

    if args.sweep:
        modes = {m: MODES[m] for m in args.modes.split(",")}
        with e2e.private_redis(args.workdir / "redis") as redis_url:
            section = sweep.run_sweep(modes, weights, corpus, len(files), redis_url, args.workdir)
        print("\n" + section)
        if not args.no_write:
            report.write_section(args.out, "configs", section)
        return 0

    baseline, reference = inprocess.seed_baseline(weights, files)
    print(f"(1) seed-style baseline: {baseline.per_second:.1f} img/s", flush=True)

    results = []
    with e2e.private_redis(args.workdir / "redis") as redis_url:
        for name in args.modes.split(","):
            results.append(
                measure_mode(name, args, weights, corpus, unique, len(files), reference, redis_url)
            )
    section = render(
        results,
        baseline,
        args,
        len(unique),
        (load_before, report.load_average()),
        time.perf_counter() - started,
    )
    print("\n" + section)
    if not args.no_write:
        report.write_section(args.out, "throughput", section)
        print(f"\nwrote {args.out}")
    if not args.skip_formats:  # HEIC, AVIF, RAW beside JPEG (also `python -m bench.formats`)
        from bench import formats

        extra = ["--workdir", str(args.workdir), "--out", str(args.out)]
        extra += ["--weights", str(args.weights)] if args.weights else []
        formats.main(extra + (["--no-write"] if args.no_write else []))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
