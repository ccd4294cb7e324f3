"""The incremental index and model versions on fakeredis: what counts as changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from producer.incremental import fingerprinted, local_fingerprint
from producer.versions import pick_version
from tasks.errors import ConfigError
from tasks.model_registry import ModelRegistry
from tasks.records import Label, Record
from tasks.settings import Settings
from tasks.source_index import SourceIndex
from tasks.store import ResultStore
from tests.unit.conftest import memory_store

TOP3 = [Label("tench", 0, 0.5), Label("goldfish", 1, 0.3), Label("shark", 2, 0.1)]


@pytest.fixture
def store() -> ResultStore:
    return memory_store()


def finished_job(store: ResultStore, job: str, records: list[Record]) -> None:
    store.create_job(job, 2, "test")
    store.add_uris(job, store.status(job).total, [[r.uri for r in records]])
    store.finish_enumeration(job)
    store.record_outcomes(job, [(i, r, False) for i, r in enumerate(records)])


def ok(uri: str, model: str) -> Record:
    return Record(uri, "ab" * 32, "ok", None, TOP3, model)


def err(uri: str, model: str) -> Record:
    return Record(uri, None, "error", "not an image", None, model)


def test_only_new_changed_or_other_model_entries_need_tagging(store: ResultStore) -> None:
    index = SourceIndex(store.r, "nightly")
    first = [("/p/a.jpg", "1:10"), ("/p/b.jpg", "1:20"), ("s3://b/c.jpg", "etag:x")]
    assert index.changed(first, "m1") == first  # nothing known yet

    # Given a finished run that tagged a and c ok, and b as an error
    index.hold_fingerprints("run1", first)
    recs = [ok("/p/a.jpg", "m1"), err("/p/b.jpg", "m1"), err("s3://b/c.jpg", "m1")]
    finished_job(store, "run1", recs)
    # When it is folded into the index
    assert index.fold(store, "run1") == 2  # a (ok) and b (a local error stays an error)

    # Then unchanged local files need nothing; a remote error is tried again
    assert index.changed(first, "m1") == [("s3://b/c.jpg", "etag:x")]
    # ...a changed fingerprint or an unknown URI needs tagging
    assert index.changed([("/p/a.jpg", "2:10"), ("/p/new.jpg", "1:1")], "m1") == [
        ("/p/a.jpg", "2:10"),
        ("/p/new.jpg", "1:1"),
    ]
    # ...so does everything tagged by another model, or anything without a fingerprint
    assert index.changed(first[:2], "m2") == first[:2]
    assert index.changed([("https://x/y.jpg", None)], "m1") == [("https://x/y.jpg", None)]
    # ...and with no model known, only fingerprints count
    assert index.changed(first[:2], None) == []
    assert not store.r.exists("bulktag:job:run1:fingerprints")


def test_local_fingerprint_changes_with_content(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"one")
    before = local_fingerprint(str(photo))
    photo.write_bytes(b"three")
    os.utime(photo, ns=(1, 2))
    assert local_fingerprint(str(photo)) == "2:5" != before
    assert local_fingerprint(str(tmp_path / "missing.jpg")) is None
    pairs = list(fingerprinted([str(tmp_path)], Settings()))
    assert pairs == [(str(photo), "2:5")]


def test_results_pick_the_current_models_version(store: ResultStore) -> None:
    registry = ModelRegistry(store.r)
    finished_job(store, "trip", [ok("/p/a.jpg", "m1")])
    registry.loaded("m1", at=1.0)
    assert pick_version(store, "trip").job == "trip"

    # A newer model is loaded: the old records are shown, with a note
    registry.loaded("m2", at=2.0)
    fallback = pick_version(store, "trip")
    assert (fallback.job, fallback.model) == ("trip", "m1")
    assert fallback.note and "reprocess trip" in fallback.note

    # Once re-tagged, both versions live side by side; current wins by default
    finished_job(store, "trip.m2", [ok("/p/a.jpg", "m2")])
    store.annotate_job("trip.m2", reprocess_of="trip")
    registry.add_version("trip", "m2", "trip.m2")
    assert pick_version(store, "trip").job == "trip.m2"
    assert pick_version(store, "trip.m2").job == "trip.m2"
    assert pick_version(store, "trip", "m1").job == "trip"
    assert pick_version(store, "trip.m2", "m1").job == "trip"
    with pytest.raises(ConfigError, match="no records by model m3"):
        pick_version(store, "trip", "m3")
    assert [m for m, _ in registry.known()] == ["m2", "m1"]
