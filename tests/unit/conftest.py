"""Unit-test fixtures: an in-memory ResultStore (fakeredis + in-memory SQLite) and records."""

from __future__ import annotations

import fakeredis
import pytest

from tasks.records import Label, Record
from tasks.results_db import ResultsDB
from tasks.store import ResultStore

TOP3 = [Label("tench", 0, 0.5), Label("goldfish", 1, 0.3), Label("shark", 2, 0.1)]


def memory_store() -> ResultStore:
    """A store of its own: fakeredis for work, a private in-memory SQLite for results."""
    return ResultStore(fakeredis.FakeRedis(decode_responses=True), ResultsDB.in_memory())


@pytest.fixture
def store() -> ResultStore:
    return memory_store()


def ok_record(uri: str) -> Record:
    return Record(uri, "ab" * 32, "ok", None, TOP3, "resnet18-x")


def error_record(uri: str, reason: str = "no such file") -> Record:
    return Record(uri, None, "error", reason, None, "resnet18-x")
