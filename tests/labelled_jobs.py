"""Seed a real Redis with jobs whose records hold known labels (search, sidecars, export).

The records are written through ``ResultStore.record_outcomes``, the path workers use,
so what the commands read is exactly what a worker would have stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.records import Label, Record
from tasks.store import ResultStore

MODEL = "resnet18-0123456789ab"


def ok(uri: str, *labels: tuple[str, int, float], model: str = MODEL) -> Record:
    """An ok record whose top labels are ``(label, index, score)``, best first."""
    return Record(uri, "ab" * 32, "ok", None, [Label(*t) for t in labels], model)


def error(uri: str, reason: str = "not an image", model: str = MODEL) -> Record:
    return Record(uri, None, "error", reason, None, model)


def book_uris(store: ResultStore, job_id: str, uris: Sequence[str]) -> None:
    """Add ``uris`` to a new job: ``add_chunk`` on the Redis store, ``add_uris`` on the
    SQL results store (issue 12), whichever this store has."""
    add_uris = getattr(store, "add_uris", None)
    if add_uris is not None:
        add_uris(job_id, 0, [list(uris)])
        return
    pipe = store.r.pipeline()
    store.add_chunk(pipe, job_id, list(uris))
    pipe.execute()


def seed_job(store: ResultStore, job_id: str, records: Sequence[Record]) -> None:
    """A finished job of ``records`` (index i = records[i]), as a worker leaves it."""
    assert store.create_job(job_id, 32, "test")
    book_uris(store, job_id, [r.uri for r in records])
    store.finish_enumeration(job_id)
    store.record_outcomes(job_id, [(i, r, False) for i, r in enumerate(records)])
