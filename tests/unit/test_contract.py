"""The wire contract: one builder, one parser, and the document that describes them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tasks import contract
from tasks.contract import ChunkOptions, parse_items, parse_options, send_tag_chunk

DOC = Path(__file__).resolve().parents[2] / "docs" / "TASK_CONTRACT.md"


class RecordingApp:
    """Stands in for a Celery app: keeps what send_task was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, **kwargs: Any) -> None:
        self.sent.append((name, kwargs))


def test_the_builder_output_is_what_the_parser_accepts() -> None:
    app = RecordingApp()
    send_tag_chunk(app, "j", [(4, "/a.jpg"), (5, "/b.jpg")], ChunkOptions(round=2), queue="q")
    ((name, kwargs),) = app.sent
    assert name == contract.TASK_TAG_CHUNK == "bulktag.tag_chunk"
    assert kwargs["queue"] == "q"
    job_id, items, options = kwargs["args"]
    assert (job_id, items, options) == ("j", [[4, "/a.jpg"], [5, "/b.jpg"]], {"round": 2})
    assert parse_items(items) == [(4, "/a.jpg"), (5, "/b.jpg")]
    assert parse_options(options) == ChunkOptions(round=2)
    # the monitoring repr never carries the whole item list
    assert kwargs["argsrepr"] == "['j', <2 items 4..5>, {'round': 2}]"


def test_default_options_travel_as_an_empty_object() -> None:
    assert contract.tag_chunk_args("j", [(0, "/a.jpg")]) == ["j", [[0, "/a.jpg"]], {}]
    assert parse_options(None) == parse_options({}) == ChunkOptions()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("nope", "items must be a list"),
        ([[0]], "bad item"),
        ([["0", "/a.jpg"]], "bad item"),
        ([[True, "/a.jpg"]], "bad item"),
        ([[0, 7]], "bad item"),
    ],
)
def test_malformed_items_are_refused(items: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_items(items)


@pytest.mark.parametrize(
    "options", [[], {"round": -1}, {"round": "2"}, {"round": True}, {"split": "yes"}]
)
def test_malformed_options_are_refused(options: Any) -> None:
    with pytest.raises(ValueError):
        parse_options(options)


def test_the_document_matches_the_module() -> None:
    doc = DOC.read_text()
    assert re.search(rf"contract — version {contract.CONTRACT_VERSION}\b", doc)
    assert "`tasks.contract.CONTRACT_VERSION`" in doc
    assert f"`{contract.TASK_TAG_CHUNK}`" in doc
    for key in contract.OPTION_KEYS:
        assert f'"{key}"' in doc, f"option {key} is not documented"
