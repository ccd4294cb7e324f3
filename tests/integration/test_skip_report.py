"""`bulktag submit` says what a folder walk left out; `--include-ext` takes it in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.cli import main


def folder_of_non_images(root: Path) -> Path:
    root.mkdir()
    (root / "clip.mov").write_bytes(b"\0\0\0\x14ftypqt  \0\0\0\0qt  ")
    (root / "clip2.MOV").write_bytes(b"\0\0\0\x14ftypqt  \0\0\0\0qt  ")
    (root / "notes.txt").write_text("nothing to see")
    return root


def test_a_folder_without_images_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    folder = folder_of_non_images(tmp_path / "videos")
    assert main(["--redis-url", redis_url, "submit", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"bulktag: error: no images found in {folder} "
        "(skipped 3 files that are not images: .mov 2, .txt 1)"
    )


def test_include_ext_forces_a_kind_in_and_status_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    folder = folder_of_non_images(tmp_path / "videos")
    args = ["--redis-url", redis_url, "submit", str(folder), "--job", "forced"]
    assert main([*args, "--include-ext", "MOV"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "job forced: 2 URIs enqueued in chunks of 32",
        "skipped 1 file that is not an image: .txt 1",
    ]
    assert main(["--redis-url", redis_url, "status", "forced", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["total"], status["skipped"]) == (2, 1)
    assert main(["--redis-url", redis_url, "status", "forced"]) == 0
    assert "skipped   1 (files that are not images: not in the job)" in capsys.readouterr().out
