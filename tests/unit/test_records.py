"""The record's JSON shape (schema v1) is every field, whatever code builds it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tasks.records import Label, Record

OK = Record(
    "/photos/a.jpg",
    "ab" * 32,
    "ok",
    None,
    [Label("tabby", 281, 0.5), Label("tiger cat", 282, 0.25), Label("lynx", 287, 0.125)],
    "resnet18-0123456789ab",
)
ERROR = Record("/photos/b.jpg", None, "error", "not an image", None, "resnet18-0123456789ab")


@pytest.mark.parametrize("record", [OK, ERROR], ids=["ok", "error"])
def test_to_dict_is_every_field_and_round_trips(record: Record) -> None:
    # to_dict is spelled out for speed: it must still match the dataclass's own fields,
    # so a field added later cannot silently drop out of the stored JSON.
    data = record.to_dict()
    assert data == dataclasses.asdict(record)
    assert Record.from_dict(json.loads(json.dumps(data))) == record
