"""Log records carry the job and chunk being worked on, in text and in JSON."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from worker import logs

Capture = tuple[logging.Logger, io.StringIO]


@pytest.fixture
def capture() -> Iterator[Capture]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("bulktag.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logs.set_context(None, None, None)


def test_text_lines_name_job_and_chunk_even_from_pool_threads(capture: Capture) -> None:
    logger, stream = capture
    logs.install(logger, "text")
    logs.set_context("trip", "c0ffee", "bulktag.tag_chunk[c0ffee]")
    worker = threading.Thread(target=lambda: logger.info("fetched %d", 3))
    worker.start()
    worker.join()
    logs.set_context(None, None, None)
    logger.info("idle")
    first, second = stream.getvalue().splitlines()
    assert "job=trip chunk=c0ffee fetched 3" in first
    assert "job=" not in second and second.endswith("idle")


def test_json_lines_carry_fields_and_tracebacks(capture: Capture) -> None:
    logger, stream = capture
    logs.install(logger, "json")
    logs.set_context("trip", "c0ffee", "bulktag.tag_chunk[c0ffee]")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("chunk failed")
    entry = json.loads(stream.getvalue())
    assert entry["job"] == "trip" and entry["chunk"] == "c0ffee"
    assert entry["task"] == "bulktag.tag_chunk[c0ffee]"
    assert entry["level"] == "ERROR" and entry["msg"] == "chunk failed"
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("Z")
