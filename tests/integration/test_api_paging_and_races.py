"""API edge cases on a real redis-server: racing and half-failed submissions, record
pages that start at their offset, and a bounded wait for a thumbnail slot."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import producer.api.routes
import producer.api.submissions
from producer.api import create_api, record_pages
from producer.api.context import THUMB_CONCURRENCY, ApiContext
from producer.submit import submit
from tasks.errors import ConfigError
from tasks.records import Label, Record
from tasks.store import ResultStore, connect
from tests.integration.test_api import LOCAL, photo, settings_for


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [photo(tmp_path / "photos" / f"p{i}.jpg") for i in range(3)]


def ok_record(uri: str, index: int) -> Record:
    top3 = [Label(f"label{k}", k, 0.5 - k / 10) for k in range(3)]
    return Record(uri, f"{index:064x}", "ok", None, top3, "resnet18-x")


def error_record(uri: str) -> Record:
    return Record(uri, None, "error", "not a recognised image format", None, "resnet18-x")


def test_a_racing_post_gets_409_and_leaves_the_winners_job_alone(
    redis_url: str, tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another request that creates job "race" right after this one checked the id
    settings = settings_for(redis_url, tmp_path)
    real_submit = producer.api.submissions.submit

    def submit_after_the_winner(sources: Iterable[str], **kwargs: Any) -> Any:
        real_submit([str(photos[0])], job=kwargs["job"], settings=settings)
        return real_submit(sources, **kwargs)

    monkeypatch.setattr(producer.api.submissions, "submit", submit_after_the_winner)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        # When this request's own submission finds the id taken
        resp = c.post("/jobs", json={"uris": [str(p) for p in photos], "job": "race"})
        # Then it answers 409, and the winner's job runs on untouched
        assert resp.status_code == 409, resp.text
        assert "already exists" in resp.json()["detail"]
        winner = c.get("/jobs/race").json()
        assert (winner["state"], winner["total"], winner["submit_error"]) == ("running", 1, None)


def test_a_submission_failing_midway_keeps_the_uris_it_sent(
    redis_url: str, tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a source that yields two images, then fails (batches of 2 chunks of 1 URI)
    def two_then_fail(sources: Iterable[str], **_: Any) -> Iterator[str]:
        yield str(photos[0])
        yield str(photos[1])
        raise ConfigError(f"cannot read folder {tmp_path}: Permission denied")

    # (``producer.submit`` the attribute is the function, so fetch the module itself)
    submit_module = importlib.import_module("producer.submit")
    monkeypatch.setattr(submit_module, "iter_sources", two_then_fail)
    settings = settings_for(redis_url, tmp_path, max_queued=2)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        body = {"source": str(photos[0].parent), "job": "half", "chunk_size": 1}
        resp = c.post("/jobs", json=body)
        # Then the job keeps running with the two URIs sent, and says why it stopped
        assert resp.status_code == 201, resp.text
        status = c.get("/jobs/half").json()
        assert (status["state"], status["total"]) == ("running", 2)
        assert "submission stopped after 2 URIs" in status["submit_error"]
        assert "cannot read folder" in status["submit_error"]
        # And the URIs it did send are tagged: the job ends as done, not cancelled
        store = ResultStore(connect(redis_url))
        store.record_outcomes("half", [(i, ok_record(str(photos[i]), i), False) for i in (0, 1)])
        assert c.get("/jobs/half").json()["state"] == "done"


class CountingRecord:
    """Stands in for ``Record`` in ``record_pages`` and counts the records decoded."""

    decoded = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        cls.decoded += 1
        return Record.from_dict(data)


def test_record_pages_start_at_their_offset_and_scan_a_capped_window(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 12,000-URI job: 0..999 and 10,000..10,004 ok, 7,000 and 11,000 errors
    listing = tmp_path / "uris.txt"
    uris = [str(tmp_path / f"img-{i:05d}.jpg") for i in range(12_000)]
    listing.write_text("\n".join(uris) + "\n")
    settings = settings_for(redis_url, tmp_path)
    submit(f"@{listing}", job="big", settings=settings)
    store = ResultStore(connect(redis_url))
    done = [*range(1000), *range(10_000, 10_005)]
    outcomes = [(i, ok_record(uris[i], i), False) for i in done]
    outcomes += [(i, error_record(uris[i]), False) for i in (7_000, 11_000)]
    store.record_outcomes("big", outcomes)
    monkeypatch.setattr(record_pages, "Record", CountingRecord)
    monkeypatch.setattr(CountingRecord, "decoded", 0)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        # When a page deep into the job is read
        page = c.get("/jobs/big/records", params={"offset": 10_000, "limit": 3}).json()
        # Then it holds that page, and only the records on it (+1 look-ahead) were decoded
        assert [i["index"] for i in page["items"]] == [10_000, 10_001, 10_002]
        assert page["items"][0]["top3"][0]["label"] == "label0"
        assert page["next_offset"] == 10_003
        assert CountingRecord.decoded <= 4
        # When errors are searched from the start, each request scans at most 5,000 URIs
        # and says where to carry on, until the job's end
        seen, offsets, offset = [], [], 0
        while offset is not None:
            params = {"only": "error", "offset": offset}
            page = c.get("/jobs/big/records", params=params).json()
            seen += [i["index"] for i in page["items"]]
            offsets.append(offset)
            offset = page["next_offset"]
        assert seen == [7_000, 11_000]
        assert offsets == [0, 5_000, 10_000]
        # And a pending page past the finished ones, and the end of the job, read as such
        pending = c.get("/jobs/big/records", params={"only": "pending", "offset": 11_998}).json()
        assert [(i["index"], i["status"]) for i in pending["items"]] == [
            (11_998, "pending"),
            (11_999, "pending"),
        ]
        assert pending["next_offset"] is None
        past = c.get("/jobs/big/records", params={"offset": 50_000}).json()
        assert (past["items"], past["next_offset"]) == ([], None)


def test_a_thumbnail_waits_a_bounded_time_for_a_slot_then_answers_503(
    redis_url: str, tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(redis_url, tmp_path)
    submit([str(photos[0])], job="t", settings=settings)
    monkeypatch.setattr(producer.api.routes, "THUMB_WAIT_SECONDS", 0.2)
    with TestClient(create_api(settings), base_url=LOCAL) as c:
        ctx: ApiContext = c.app.state.context  # type: ignore[attr-defined]
        # Given every thumbnail slot held by slow renders
        for _ in range(THUMB_CONCURRENCY):
            assert ctx.thumb_slots.acquire(blocking=False)
        # Then a request gives up after the wait with a clear 503, not a parked thread
        busy = c.get("/jobs/t/thumbs/0")
        assert busy.status_code == 503 and "busy" in busy.json()["detail"]
        assert busy.headers["retry-after"] == "5"
        # When the slots free up, thumbnails are served and their slot is given back
        for _ in range(THUMB_CONCURRENCY):
            ctx.thumb_slots.release()
        assert c.get("/jobs/t/thumbs/0").status_code == 200
        assert c.get("/jobs/t/thumbs/99").status_code == 404
        for _ in range(THUMB_CONCURRENCY):
            assert ctx.thumb_slots.acquire(blocking=False)
