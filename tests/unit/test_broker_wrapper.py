"""What ``worker.broker`` refuses before kombu builds a Message (issue 16, finding 8).

The real-worker version, with each wrapper LPUSHed onto a live queue, is
tests/e2e/test_contract_raw.py::test_malformed_wrappers_are_refused_without_dropping_the_connection.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.test_contract_raw import raw_message
from worker.broker import transport_for, wrapper_problem


def good() -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw_message("bulktag.tag_chunk", ["j", [], {}], "q"))
    return message


def test_a_wrapper_as_celery_and_the_contract_build_it_passes() -> None:
    assert wrapper_problem(good()) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m["properties"].pop("delivery_tag"), "no properties.delivery_tag"),
        (lambda m: m["properties"].update(delivery_tag=""), "no properties.delivery_tag"),
        (lambda m: m.pop("properties"), "no 'properties' object"),
        (lambda m: m.update(properties="x"), "no 'properties' object"),
        (lambda m: m["properties"].pop("delivery_info"), "no properties.delivery_info"),
        (lambda m: m["properties"]["delivery_info"].pop("routing_key"), "delivery_info"),
        (lambda m: m.update(headers=[1]), "'headers' is not an object"),
        (lambda m: m.update(body="abc"), "'body' is not valid base64"),
        (lambda m: m.update(body=12), "a base64 'body' that is not a string"),
    ],
)
def test_each_broken_wrapper_is_refused_with_its_reason(change: Any, reason: str) -> None:
    message = good()
    change(message)
    problem = wrapper_problem(message)
    assert problem is not None and reason in problem


def test_non_objects_are_refused_and_a_body_that_is_not_json_is_left_to_celery() -> None:
    assert wrapper_problem([1, 2]) == "the wrapper is a JSON list, not an object"
    message = good()
    message["body"] = base64.b64encode(b"{not json").decode()
    assert wrapper_problem(message) is None  # Celery logs and acks it (on_decode_error)


def test_the_transport_follows_the_url_scheme() -> None:
    assert transport_for("redis://h:6379/0") == "worker.broker:Transport"
    assert transport_for("rediss://h:6380/0") == "worker.broker:Transport"
    assert transport_for("sentinel://h:26379") == "worker.broker:SentinelTransport"
    assert transport_for("amqp://h") is None
