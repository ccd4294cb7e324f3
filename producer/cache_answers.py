"""Answer a job's local images from the dedupe cache in the producer, before a worker can.

A second ``bulktag run`` over photos already tagged would otherwise wait for the worker
to start (its processes import torch and load the model: seconds) only to read each
file, hash it and find its top-3 cached. Here ``bulktag run`` reads and hashes the local
files itself and writes, for the cache hits, the very records the worker would write
(``ok``, deduplicated, the same model id). Records are written with HSETNX
(``ResultStore.record_outcomes``), so this and a worker may race over a URI: whichever
writes first wins and the job counts it once.

Only the reference variant (``exact`` decode, ``fp32``) is answered here: its cache key
is the checkpoint's model id itself (``tasks.inference.variant_id`` adds nothing), while
other modes key their cache by a suffixed id that needs the model to compute. Remote URIs
and unreadable files are left to the worker, which gives them their records; so are
uncached contents, except those the worker's own decode checks refuse (``refused``).
"""

from __future__ import annotations

import hashlib
import threading
from itertools import islice
from typing import Any

from producer.sources import REMOTE_SCHEMES
from tasks.decode import check_resize_budget, configure_limits, decode_image
from tasks.errors import BulktagError, UriError
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.store import ResultStore

BATCH = 64  # URIs read, hashed and looked up per round trip
# Stop when a batch is mostly misses: a first run gains nothing from the cache and
# should not read every file twice (here and in the worker).
MIN_HIT_RATE = 0.5


def answerable(decode: str, precision: str) -> bool:
    """Whether the cache key of this worker variant is the plain checkpoint model id."""
    return decode == "exact" and precision == "fp32"


def answer_from_cache(
    store: ResultStore,
    job_id: str,
    model_id: str,
    settings: Settings,
    stop: threading.Event | None = None,
) -> int:
    """Write the records of ``job_id``'s pending local images whose content is cached.

    Args:
        store: the job's store (the one the worker writes to).
        job_id: a fully submitted job.
        model_id: the checkpoint's model id (the reference variant's cache key).
        settings: allowed roots and size limit, the same the worker reads files under.
        stop: set it to end the pass early (the run is stopping).

    Returns:
        How many records were written here.
    """
    from tasks.fetch import fetch_local  # boto3 comes with it: import off the start path

    configure_limits(settings.max_pixels)  # Pillow's bomb limit as in a worker process
    answered = 0
    pending = ((i, uri) for i, uri, rec in store.records(job_id) if rec is None)
    while batch := list(islice(pending, BATCH)):
        if stop is not None and stop.is_set():
            break
        read: dict[int, tuple[str, str, bytes]] = {}
        for index, uri in batch:
            if uri.startswith(REMOTE_SCHEMES):
                continue
            try:
                data = fetch_local(uri, settings)
            except BulktagError:  # missing, too large, not allowed: the worker says why
                continue
            read[index] = (uri, hashlib.sha256(data).hexdigest(), data)
        known = store.cached_top3(model_id, sorted({digest for _, digest, _ in read.values()}))
        outcomes = []
        for index, (uri, digest, _) in read.items():
            if digest in known:
                top = [Label(t["label"], int(t["index"]), float(t["score"])) for t in known[digest]]
                outcomes.append((index, Record(uri, digest, "ok", None, top, model_id), True))
        mostly_known = len(outcomes) >= MIN_HIT_RATE * len(batch)
        if mostly_known:  # the few misses: broken files need no worker to be refused
            outcomes += refused(read, known, model_id, settings.max_pixels)
        store.record_outcomes(job_id, outcomes)
        answered += len(outcomes)
        if not mostly_known:
            break
    return answered


def refused(
    read: dict[int, tuple[str, str, bytes]],
    known: dict[str, Any],
    model_id: str,
    max_pixels: int,
) -> list[tuple[int, Record, bool]]:
    """Error records for the uncached contents a worker's decode would refuse.

    Only top-3 lists are cached, so without this a warm run over a folder holding one
    broken file would wait seconds for a worker to start just to refuse it. The checks
    are the worker's own (``tasks.decode``: torch-free), so are the reasons; a content
    that decodes is left to the worker.
    """
    out = []
    for index, (uri, digest, data) in read.items():
        if digest in known:
            continue
        try:
            check_resize_budget(decode_image(data, max_pixels).size, max_pixels)
        except UriError as exc:
            out.append((index, Record(uri, digest, "error", str(exc), None, model_id), False))
    return out
