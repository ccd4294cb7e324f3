"""Every command has --help; expected failures are one line on stderr and exit non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.cli import build_parser, main

COMMANDS = ["worker", "submit", "status", "results", "cancel", "jobs", "workers", "weights"]
COMMANDS += ["beat", "schedule", "reprocess", "models"]  # producer/cli/schedules.py, models.py
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: bulktag" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["results", "job", "--format", "xml"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("bulktag: error: ")
    return err


def test_unreachable_redis_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--redis-url", DEAD_REDIS, "status", "x"]) == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in one_line_error(capsys)


def test_password_is_masked_in_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--redis-url", "redis://:s3cret@127.0.0.1:1/0", "jobs"]) == 1
    err = one_line_error(capsys)
    assert "s3cret" not in err and "***@127.0.0.1:1" in err


def test_missing_checkpoint_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--weights", str(tmp_path / "none.pt")]) == 1
    assert "model checkpoint not found" in one_line_error(capsys)


def test_parser_builds() -> None:
    assert build_parser().prog == "bulktag"


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "x", "--chunk-size", "0"],
        ["jobs", "--limit", "0"],
        ["retry", "j", "--chunk-size", "-1"],
    ],
)
def test_counts_below_one_are_argument_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err
