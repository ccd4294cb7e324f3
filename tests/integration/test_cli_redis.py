"""CLI errors that need a reachable Redis to get past the connection check."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.cli import main


def test_missing_source_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    assert main(["--redis-url", redis_url, "submit", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bulktag: error: no such file or directory") and "\n" not in err


def test_existing_job_id_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["--redis-url", redis_url, "submit", str(tmp_path), "--job", "j"]) == 0
    assert main(["--redis-url", redis_url, "submit", str(tmp_path), "--job", "j"]) == 1
    assert "already exists" in capsys.readouterr().err
