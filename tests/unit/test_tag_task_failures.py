"""The task wrapper never lets a chunk vanish: records with the reason, or a requeue."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery.exceptions import Reject

from tasks import inference, process
from tasks import tag as tag_module
from tasks.chunks import ChunkLedger
from tasks.errors import WeightsError
from tasks.store import ResultStore


@pytest.fixture
def wired(store: ResultStore, monkeypatch: pytest.MonkeyPatch) -> ResultStore:
    """tasks.tag wired to an in-memory store, with a job of two URIs waiting."""
    monkeypatch.setattr(process, "store", lambda: store)
    monkeypatch.setattr(process, "ledger", lambda: ChunkLedger(store.r))
    monkeypatch.setattr(inference, "_current", None)
    store.create_job("j", 2, "src")
    store.add_uris("j", store.status("j").total, [["/a.jpg", "/b.jpg"]])
    store.finish_enumeration("j")
    return store


ITEMS: list[Any] = [[0, "/a.jpg"], [1, "/b.jpg"]]


def test_model_that_cannot_load_ends_uris_as_errors_with_the_reason(
    wired: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model() -> None:
        raise WeightsError("checkpoint /w.pt sha256 does not match its pin")

    monkeypatch.setattr(process, "tagger", no_model)
    tag_module.tag_chunk.run("j", ITEMS, {})
    st = wired.status("j")
    assert (st.state, st.ok, st.error) == ("done", 0, 2)
    reasons = {rec.error for _, _, rec in wired.records("j") if rec}
    assert reasons == {
        "internal error: WeightsError: checkpoint /w.pt sha256 does not match its pin"
    }


def test_redis_refusing_writes_requeues_the_chunk(
    wired: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise redis.exceptions.OutOfMemoryError(
            "command not allowed when used memory > 'maxmemory'"
        )

    monkeypatch.setattr(process, "tagger", lambda: (_ for _ in ()).throw(WeightsError("x")))
    monkeypatch.setattr(wired, "record_outcomes", refuse)
    # The failure cannot be recorded either: the message must go back to the queue
    with pytest.raises(Reject):
        tag_module.tag_chunk.run("j", ITEMS, {})
    assert wired.status("j").pending == 2
