"""A pool child that cannot load its model stops the worker, whatever the exception."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tasks.errors import WeightsError
from worker import bootstrap


class Exited(Exception):
    """Stands in for os._exit, which would end the test process."""


@pytest.mark.parametrize(
    ("error", "reported"),
    [
        (WeightsError("w.pt: bad"), "w.pt: bad"),
        (MemoryError("out of memory"), "loading the model failed: MemoryError: out of memory"),
    ],
)
def test_any_load_failure_reports_and_stops_the_parent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, reported: str
) -> None:
    failure_file = tmp_path / "start-failure"
    kills: list[tuple[int, int]] = []

    def fail() -> None:
        raise error

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setenv(bootstrap.START_FAILURE_ENV, str(failure_file))
    monkeypatch.setattr(bootstrap.process, "load_model", fail)
    monkeypatch.setattr(bootstrap.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setattr(bootstrap.os, "_exit", exit_)

    with pytest.raises(Exited, match="1"):
        bootstrap.load_model_in_child()

    assert failure_file.read_text() == f"worker cannot start: {reported}\n"
    assert kills == [(bootstrap.os.getppid(), signal.SIGQUIT)]
