"""Label search over the Redis store by scanning records (the store method agreed with
the SQL results store, docs: /work/coord/SEARCH_API.md).

Redis keeps no label index, so ``search`` and ``label_counts`` read every record of
the jobs in scope, a slice at a time (bounded memory, one HMGET per slice). That is
fine for the archives a Redis store holds and keeps the commands working on it; the
SQL results store answers the same calls from its label index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from tasks import keys
from tasks.records import Record

SCAN_SLICE = 1_000  # records per round trip


class LabelScan:
    """``search`` / ``label_counts`` for ``ResultStore`` (which provides ``self.r``)."""

    r: redis.Redis

    def _jobs_newest_first(self, job_id: str | None) -> list[str]:
        client: Any = self.r  # redis-py's stubs vary by version; values are str
        if job_id is not None:
            return [job_id] if client.exists(keys.job(job_id)) else []
        return [str(j) for j in client.zrevrange(keys.jobs(), 0, -1)]

    def _scan_job(
        self, job_id: str, markers: Sequence[str] = ()
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, record dict)`` of the job's stored records, highest index first.

        With ``markers``, records whose raw JSON holds none of them are skipped without
        being decoded (decoding is most of a scan's time); callers still check the
        decoded record, so a marker that matches elsewhere (in a URI) costs nothing.
        """
        client: Any = self.r
        total = int(client.hget(keys.job(job_id), "total") or 0)
        for stop in range(total, 0, -SCAN_SLICE):
            start = max(0, stop - SCAN_SLICE)
            fields = [str(i) for i in range(stop - 1, start - 1, -1)]
            for index, raw in zip(
                range(stop - 1, start - 1, -1),
                client.hmget(keys.job_records(job_id), fields),
                strict=True,
            ):
                if raw and (not markers or any(m in raw for m in markers)):
                    yield index, json.loads(raw)

    def search(
        self,
        indices: Sequence[int],
        *,
        min_score: float = 0.0,
        top1: bool = False,
        job_id: str | None = None,
        model_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[tuple[str, int, Record]]:
        """``(job id, index in job, record)`` of ok records whose top-3 (or top-1 with
        ``top1``) holds one of ``indices`` scoring at least ``min_score``, newest first
        (newest job first, then the latest URIs of a job first), streamed.
        """
        wanted = set(indices)
        if not wanted or limit == 0:
            return
        # Record.to_dict -> json.dumps writes each label as {"label": ..., "index": N, ...}
        markers = [f'"index": {i},' for i in wanted]
        skipped = sent = 0
        for job in self._jobs_newest_first(job_id):
            for index, data in self._scan_job(job, markers):
                if data.get("status") != "ok" or (model_id and data.get("model") != model_id):
                    continue
                top = data.get("top3") or []
                if top1:
                    top = top[:1]
                if not any(t["index"] in wanted and t["score"] >= min_score for t in top):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                yield job, index, Record.from_dict(data)
                sent += 1
                if limit is not None and sent >= limit:
                    return

    def label_counts(
        self, *, model_id: str | None = None, job_id: str | None = None
    ) -> dict[int, int]:
        """How many ok records hold each class index anywhere in their top-3."""
        counts: dict[int, int] = {}
        for job in self._jobs_newest_first(job_id):
            for _, data in self._scan_job(job):
                if data.get("status") != "ok" or (model_id and data.get("model") != model_id):
                    continue
                for t in data.get("top3") or []:
                    counts[t["index"]] = counts.get(t["index"], 0) + 1
        return counts
