"""Decode and forward a chunk's new images on parallel *lanes*, keeping every core busy.

A lane is one thread that takes the next group of images, decodes them into 224x224
crops and runs the group's forward pass with single-threaded torch. Lanes run side by
side, so one lane's forward overlaps another's decode and no core waits for a phase to
finish. On this project's 2-core machine two single-threaded lanes beat "decode on two
threads, then one two-threaded forward": a multi-threaded forward stalls at every
layer's barrier whenever another process takes a core, and its decode phase leaves the
torch threads idle (docs/BENCHMARKS.md has the measurements).

With two or more lanes, groups are smaller than ``batch_size`` when that is what it
takes to give every lane work, and shrink toward the end of a chunk: the lane that
finishes first takes the next group, so both lanes end a chunk within a few images of
each other. A single lane gets equal groups of at most ``batch_size``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import torch

from tasks.inference import Tagger
from tasks.preprocess import decode_crop, normalize
from tasks.records import Top3

# Groups per lane to aim for: more groups balance lanes better, smaller groups make
# less efficient forwards. Two is enough for the chunk sizes bulktag uses.
GROUPS_PER_LANE = 2
# One-thread forwards cost about the same per image from batch 4 to 8 and ~10-35% more
# at batch 1-2 (docs/BENCHMARKS.md), so groups stay at 4 or more while they can.
MIN_GROUP = 4


def plan_groups(count: int, lanes: int, batch_size: int) -> list[range]:
    """Split ``count`` items into contiguous groups that shrink toward the end.

    Each group is about ``1 / (lanes x GROUPS_PER_LANE)`` of what is left, at most
    ``batch_size`` and at least ``MIN_GROUP`` (fewer when there are fewer items than
    lanes x ``MIN_GROUP``). Lanes take groups in order, so the last groups are the
    small ones and the lanes finish a chunk within a few images of each other: 32
    images on 2 lanes run as 8, 6, 5, 4, 4, 4, 1. One lane has no one to wait for, so
    it gets equal groups of at most ``batch_size``: 32 images at 16 run as 16, 16.
    """
    lanes = max(1, lanes)
    if lanes == 1:
        # Nothing to balance: equal groups of at most batch_size, so no forward runs at
        # the small batches where it costs most per image (29 images at 16: 14 + 15).
        groups = math.ceil(count / max(1, batch_size))
        bounds = [count * k // groups for k in range(groups + 1)] if groups else [0]
        return [range(a, b) for a, b in itertools.pairwise(bounds)]
    per_round = lanes * GROUPS_PER_LANE
    floor = min(MIN_GROUP, math.ceil(count / lanes)) if count else 1
    out, start = [], 0
    while start < count:
        remaining = count - start
        size = min(remaining, batch_size, max(floor, math.ceil(remaining / per_round)))
        out.append(range(start, start + size))
        start += size
    return out


def tag_contents(
    contents: Sequence[tuple[str, bytes]],
    *,
    tagger: Tagger,
    pool: Executor,
    lanes: int,
    batch_size: int,
    max_pixels: int,
    decode: str = "exact",
    forward: Callable[[torch.Tensor], list[Top3]] | None = None,
    guard: Callable[..., Any] | None = None,
) -> tuple[dict[str, Top3], dict[str, BaseException]]:
    """Top-3 for each ``(sha256, bytes)`` content, or the reason it could not be decoded.

    Args:
        contents: unique contents to tag, keyed by their sha256.
        tagger: the process's model.
        pool: runs the lanes (it must have at least ``lanes`` free threads).
        lanes: lanes to run side by side (each one single-threaded decode + forward).
        batch_size: the largest group forwarded at once.
        max_pixels: the decode pixel limit.
        decode: ``exact`` or ``fast`` (``tasks.preprocess``).
        forward: runs one batch (default ``tagger.top3_batch``; the worker wraps it
            with its metrics).
        guard: ``guard(fn, *args)`` returns ``fn(*args)`` or the exception it raised,
            so one bad image cannot fail its group (default: a plain try/except).

    Returns:
        ``(fresh, failures)``: top-3 lists for decoded contents, exceptions for the rest.

    Raises:
        Exception: whatever the forward pass raised (a model fault fails the chunk).
    """
    fresh: dict[str, Top3] = {}
    failures: dict[str, BaseException] = {}
    groups = plan_groups(len(contents), max(1, lanes), batch_size)
    if not groups:
        return fresh, failures
    safely = guard or _guard
    run_forward = forward or tagger.top3_batch
    pending = iter(groups)
    lock = threading.Lock()
    # Set by a lane whose forward failed: the chunk is lost, so the other lanes take no
    # more groups. Without it they would keep forwarding after this call had raised and
    # overlap the next chunk's lanes, oversubscribing the cores.
    stop = threading.Event()

    def lane() -> None:
        while not stop.is_set():
            with lock:
                group = next(pending, None)
            if group is None:
                return
            keys: list[str] = []
            crops: list[torch.Tensor] = []
            for i in group:
                digest, data = contents[i]
                result = safely(decode_crop, data, max_pixels, decode)
                if isinstance(result, BaseException):
                    failures[digest] = result
                else:
                    keys.append(digest)
                    crops.append(result)
            if crops and not stop.is_set():  # another lane failed while this one decoded
                batch = normalize(crops, tagger.device)  # uint8 crops cross to a GPU
                del crops  # the uint8 crops are not needed during the forward
                for digest, top in zip(keys, run_forward(batch), strict=True):
                    fresh[digest] = top

    def guarded_lane() -> None:
        try:
            lane()
        except BaseException:
            stop.set()
            raise

    futures = [pool.submit(guarded_lane) for _ in range(min(max(1, lanes), len(groups)))]
    # Every lane has ended before a failure is re-raised: nothing of this chunk still
    # runs when the caller moves on.
    concurrent.futures.wait(futures)
    for future in futures:
        future.result()  # re-raises a lane's forward failure
    return fresh, failures


def _guard(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return exc
