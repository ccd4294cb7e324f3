"""A scheduled (incremental) run records what its folder walk skipped, as submit does."""

from __future__ import annotations

from pathlib import Path

from producer.incremental import run_incremental
from tasks.settings import Settings
from tasks.store import ResultStore, connect
from tests.format_fixtures import heic_bytes, jpeg_bytes, photo


def test_a_scheduled_run_counts_the_files_it_does_not_take(tmp_path: Path, redis_url: str) -> None:
    # Given an inbox with a JPEG, a HEIC (upper case), a video and a sidecar
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    small = photo("coffee", (96, 64))
    (inbox / "a.jpg").write_bytes(jpeg_bytes(small))
    (inbox / "IMG_1.HEIC").write_bytes(heic_bytes(small))
    (inbox / "clip.mov").write_bytes(b"\0\0\0\x14ftypqt  \0\0\0\0qt  ")
    (inbox / "IMG_1.HEIC.xmp").write_text("<x:xmpmeta/>")
    settings = Settings(redis_url=redis_url)
    # When the schedule runs
    report = run_incremental("inbox", [str(inbox)], settings=settings, model="m1")
    # Then both photos are enqueued and the job says what was left out
    assert report.job is not None and report.enqueued == 2
    status = ResultStore(connect(redis_url)).status(report.job)
    assert status.skipped == 2
