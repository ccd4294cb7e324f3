"""Unit-test fixtures: an in-memory ResultStore (fakeredis with Lua) and record factories."""

from __future__ import annotations

import fakeredis
import pytest

from tasks.records import Label, Record
from tasks.store import ResultStore

TOP3 = [Label("tench", 0, 0.5), Label("goldfish", 1, 0.3), Label("shark", 2, 0.1)]


@pytest.fixture
def store() -> ResultStore:
    return ResultStore(fakeredis.FakeRedis(decode_responses=True))


def ok_record(uri: str) -> Record:
    return Record(uri, "ab" * 32, "ok", None, TOP3, "resnet18-x")


def error_record(uri: str, reason: str = "no such file") -> Record:
    return Record(uri, None, "error", reason, None, "resnet18-x")
