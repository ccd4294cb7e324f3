"""In-process measurements: the seed-style baseline, the model alone, decode+model.

None of these touch Redis or Celery; they bound what the worker could do and give the
reference top-3 that every faster mode's agreement is measured against.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from tasks.inference import Tagger
from tasks.lanes import tag_contents
from weights.checkpoint import load_checkpoint

# uri -> (top-3 indices, top-3 scores)
TopK = dict[str, tuple[list[int], list[float]]]


@dataclass
class Rate:
    """``images`` done in ``seconds``."""

    images: int
    seconds: float
    cpu_seconds: float = 0.0  # this process's CPU time (all threads) over the same span

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_seconds / self.images if self.images else 0.0

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def seed_baseline(weights: Path, files: Sequence[Path]) -> tuple[Rate, TopK]:
    """The seed's pipeline, one image at a time: also the fp32 reference top-3.

    Plain torchvision, nothing from bulktag's hot path: PIL open, full decode, EXIF
    transpose, ``convert("RGB")``, the IMAGENET1K_V1 preset, a batch-1 fp32 forward of
    the unfused model with torch's default threads, softmax, top-3.
    """
    from PIL import Image, ImageOps
    from torchvision.models import ResNet18_Weights, resnet18

    ckpt = load_checkpoint(weights)
    model = resnet18(weights=None)
    model.load_state_dict(ckpt.state_dict)
    model.eval()
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    torch.set_num_threads(torch.get_num_threads())  # the default: one per core
    results: TopK = {}
    started, cpu = time.perf_counter(), time.process_time()
    for path in files:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
        with torch.inference_mode():
            probs = torch.softmax(model(transform(rgb).unsqueeze(0)), dim=1)
            scores, indices = probs.topk(3, dim=1)
        results[str(path)] = (indices[0].tolist(), scores[0].tolist())
    return Rate(len(files), time.perf_counter() - started, time.process_time() - cpu), results


def load_tagger(weights: Path, precision: str, decode: str, lanes: int = 1) -> Tagger:
    """The worker's model object, built the way ``worker.bootstrap`` builds it."""
    from tasks.decode import configure_limits
    from tasks.preprocess import configure_allocator
    from tasks.quantize import calibration_path, load_calibration

    torch.set_num_threads(1)  # each lane forwards single-threaded, as in the worker
    configure_limits(64_000_000)
    configure_allocator(3 * lanes)  # Pillow block reuse and malloc arenas, as in the worker
    ckpt = load_checkpoint(weights)
    cal = load_calibration(calibration_path(weights), ckpt) if precision == "int8" else None
    tagger = Tagger.from_checkpoint(ckpt, precision=precision, decode=decode, calibration=cal)
    tagger.warm_up(16)
    return tagger


def model_only(tagger: Tagger, lanes: int, batch: int, seconds: float = 4.0) -> Rate:
    """Forward passes alone, ``lanes`` threads side by side, random input of ``batch``."""
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    tagger.top3_batch(x)  # warm this shape
    done = [0] * lanes
    stop_at = time.perf_counter() + seconds

    def lane(k: int) -> None:
        while time.perf_counter() < stop_at:
            tagger.top3_batch(x)
            done[k] += batch

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(lanes)]
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Rate(sum(done), time.perf_counter() - started, time.process_time() - cpu)


def decode_and_model(
    tagger: Tagger,
    contents: Sequence[tuple[str, bytes]],
    *,
    lanes: int,
    batch_size: int,
    max_pixels: int,
) -> tuple[Rate, dict[str, list[dict[str, object]]]]:
    """The hot path without Redis or Celery: bytes in memory -> lanes -> top-3.

    Contents go through ``tasks.lanes.tag_contents`` as one chunk-free stream, so no
    chunk boundary idles a lane.
    """
    with ThreadPoolExecutor(lanes) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        fresh, failures = tag_contents(
            contents,
            tagger=tagger,
            pool=pool,
            lanes=lanes,
            batch_size=batch_size,
            max_pixels=max_pixels,
            decode=tagger.decode,
        )
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failures:
        raise RuntimeError(f"{len(failures)} corpus images failed to decode: {failures}")
    return Rate(len(contents), seconds, cpu), fresh


def decode_and_model_processes(
    weights: Path,
    precision: str,
    decode: str,
    contents: Sequence[tuple[str, bytes]],
    *,
    processes: int,
    lanes: int,
    batch_size: int,
    max_pixels: int,
) -> Rate:
    """The in-process limit in the worker's layout: ``processes`` x ``lanes``, no Redis.

    Each forked process loads its own model (as a Celery pool child does), then all
    start together on an interleaved share of ``contents`` as one chunk-free stream.
    Wall time runs from the common start to the last process's end; CPU is summed.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()

    def child(k: int) -> None:
        tagger = load_tagger(weights, precision, decode, lanes)
        share = contents[k::processes]
        barrier.wait()
        started, cpu = time.perf_counter(), time.process_time()
        rate, _ = decode_and_model(
            tagger, share, lanes=lanes, batch_size=batch_size, max_pixels=max_pixels
        )
        results.put((started, started + rate.seconds, time.process_time() - cpu))

    procs = [ctx.Process(target=child, args=(k,)) for k in range(processes)]
    for proc in procs:
        proc.start()
    spans = [results.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"in-process limit: a process exited with {proc.exitcode}")
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return Rate(len(contents), wall, sum(cpu for _, _, cpu in spans))
