"""Progress while submitting: a running count of URIs enqueued, and backpressure waits."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from producer.progress import EnumerationView


def test_plain_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with EnumerationView(console, plain_every=0) as view:
        view.on_chunk(1024)
        view.on_wait(50)
        view.on_chunk(2048)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("enumerating: 1,024 URIs enqueued (")
    assert lines[1].startswith("queue full (50 chunks waiting), waiting for workers: 1,024 URIs")
    assert lines[2].startswith("enumerating: 2,048 URIs enqueued")


def test_a_spinner_with_the_count_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with EnumerationView(console) as view:
        view.on_chunk(1_000_000)
        view._progress.refresh()  # type: ignore[union-attr]
    assert "1,000,000 URIs enqueued" in out.getvalue()
