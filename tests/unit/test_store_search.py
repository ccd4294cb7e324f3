"""ResultStore.search / label_counts (the SQL results store's label index): order, paging."""

from __future__ import annotations

import time

from tasks.store import ResultStore
from tests.labelled_jobs import error, ok, seed_job


def seeded(store: ResultStore) -> None:
    seed_job(
        store, "a", [ok(f"a{i}", ("tabby", 281, i / 10), ("tench", 0, 0.01)) for i in range(5)]
    )
    time.sleep(0.01)
    seed_job(store, "b", [ok("b0", ("tench", 0, 0.9)), error("b1"), ok("b2", ("tabby", 281, 0.4))])


def test_search_is_newest_first_and_pages_by_offset(store: ResultStore) -> None:
    seeded(store)
    every = [(j, i) for j, i, _ in store.search([281])]
    assert every == [("b", 2), ("a", 4), ("a", 3), ("a", 2), ("a", 1), ("a", 0)]
    pages = [[(j, i) for j, i, _ in store.search([281], offset=o, limit=2)] for o in range(0, 6, 2)]
    assert [hit for page in pages for hit in page] == every
    assert [(j, i) for j, i, _ in store.search([281], min_score=0.3)] == every[:3]
    assert [(j, i) for j, i, _ in store.search([0], top1=True)] == [("b", 0)]
    assert [(j, i) for j, i, _ in store.search([0], job_id="a", limit=1)] == [("a", 4)]
    assert list(store.search([0], model_id="resnet18-other")) == []
    assert list(store.search([0], job_id="missing")) == []


def test_label_counts_count_ok_records_holding_each_index(store: ResultStore) -> None:
    seeded(store)
    assert store.label_counts() == {281: 6, 0: 6}
    assert store.label_counts(job_id="b") == {0: 1, 281: 1}
