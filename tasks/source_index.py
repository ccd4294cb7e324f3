"""The incremental index of one schedule: what its runs have already tagged, and how.

``bulktag:index:<schedule>`` maps each URI to ``"<fingerprint> <model id>"`` for the
last time a run of the schedule tagged it ``ok``. A fingerprint is what the producer
can learn *without downloading*: ``mtime_ns:size`` for a local file, the object's ETag
for S3. A later run enqueues a URI only if it has no entry, its fingerprint changed,
or its entry names another model than the current one.

Entries are written only after a job finished (``fold``): a run stores the
fingerprints it enumerated in ``bulktag:job:<id>:fingerprints``, and the next run folds
the finished job's records into the index before it compares: ok records, and error
records of local files (``settled_error``). So a URI whose run was cancelled or lost,
or whose remote fetch failed, is simply tried again next time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from tasks import keys
from tasks.store import ResultStore


def entry(fingerprint: str, model_id: str) -> str:
    return f"{fingerprint} {model_id}"


def settled_error(fingerprint: str) -> bool:
    """Whether an error record with this fingerprint stays an error until the file changes.

    A local file that cannot be decoded, is too large or is outside the allowed roots
    gives the same answer on every read until it changes (and so its mtime/size). A
    remote error may be a timeout or throttling that outlived the retries: try it again.
    """
    return not fingerprint.startswith("etag:")


class SourceIndex:
    """One schedule's index, its pending fingerprints and its run state."""

    def __init__(self, client: redis.Redis, schedule: str) -> None:
        self.r: Any = client  # redis-py's stubs vary by version; values are str
        self.name = schedule
        self.key = keys.source_index(schedule)

    def changed(
        self, pairs: Sequence[tuple[str, str | None]], model_id: str | None
    ) -> list[tuple[str, str | None]]:
        """The ``(uri, fingerprint)`` pairs that need tagging, in order.

        A pair without a fingerprint (HTTP, a single S3 object) always needs it; the
        workers' content dedupe still spares it the forward pass when nothing changed.
        With ``model_id`` None (no worker has ever registered) only fingerprints count.
        """
        if not pairs:
            return []
        known = self.r.hmget(self.key, [uri for uri, _ in pairs])
        out = []
        for (uri, fp), have in zip(pairs, known, strict=True):
            if fp is None or have is None:
                out.append((uri, fp))
            elif model_id is None:
                if have.split(" ", 1)[0] != fp:
                    out.append((uri, fp))
            elif have != entry(fp, model_id):
                out.append((uri, fp))
        return out

    def hold_fingerprints(self, job_id: str, pairs: Iterable[tuple[str, str | None]]) -> None:
        """Remember what ``job_id`` was enumerated with, for ``fold`` once it finished."""
        mapping = {uri: fp for uri, fp in pairs if fp is not None}
        if mapping:
            self.r.hset(keys.job_fingerprints(job_id), mapping=mapping)

    def fold(self, store: ResultStore, job_id: str, batch: int = 1000) -> int:
        """Fold a finished job's final records into the index; return how many entries.

        The model id written is the one on each record, i.e. the model that really
        tagged it, even if workers were upgraded while the job ran.
        """
        held = keys.job_fingerprints(job_id)
        folded = 0
        done: list[tuple[str, str, bool]] = []  # (uri, model id, ok) of final records
        for _, uri, record in store.records(job_id, batch):
            if record is not None:
                done.append((uri, record.model, record.status == "ok"))
            if len(done) >= batch:
                folded += self._fold_batch(held, done)
        folded += self._fold_batch(held, done)
        self.r.delete(held)
        return folded

    def _fold_batch(self, held: str, done: list[tuple[str, str, bool]]) -> int:
        """Write index entries for ``done`` (emptied) from the held fingerprints."""
        if not done:
            return 0
        fps = self.r.hmget(held, [uri for uri, _, _ in done])
        mapping = {
            uri: entry(fp, model)
            for (uri, model, ok), fp in zip(done, fps, strict=True)
            if fp and (ok or settled_error(fp))
        }
        done.clear()
        if mapping:
            self.r.hset(self.key, mapping=mapping)
        return len(mapping)

    def size(self) -> int:
        return int(self.r.hlen(self.key))

    def reset(self) -> None:
        """Forget everything: the next run tags the whole source again."""
        self.r.delete(self.key, keys.schedule_state(self.name))

    # -- run state ---------------------------------------------------------------------
    def state(self) -> dict[str, str]:
        return dict(self.r.hgetall(keys.schedule_state(self.name)))

    def record_run(self, **fields: Any) -> None:
        fields.setdefault("last_run_at", time.time())
        self.r.hset(keys.schedule_state(self.name), mapping=fields)

    def lock(self, ttl: int) -> bool:
        """Take the schedule's run lock for ``ttl`` seconds; False if a run holds it."""
        return bool(self.r.set(keys.schedule_lock(self.name), "1", nx=True, ex=ttl))

    def unlock(self) -> None:
        self.r.delete(keys.schedule_lock(self.name))
