"""The dashboard's search box in headless Chromium, against `bulktag api` and a real Redis.

Records are seeded through the store (no worker needed to show search); the photos
are real files, so every hit's thumbnail is rendered by the API as for a job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from tasks.model_labels import ModelLabels
from tasks.model_registry import ModelRegistry
from tasks.store import ResultStore
from tests.browser import launch_chromium, need_chromium
from tests.e2e.test_dashboard import TOKEN, ApiProcess
from tests.labelled_jobs import MODEL, ok, seed_job
from tests.servers import REPO

pytestmark = pytest.mark.e2e

SCREENSHOT = REPO / "var" / "screenshots" / "dashboard-search.png"
LABELS = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]


@pytest.fixture
def api(worker_env: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess({**worker_env, "BULKTAG_API_TOKEN": TOKEN}, tmp_path / "api.log")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def test_search_box_shows_matching_thumbnails_with_labels_and_scores(
    redis_client: redis.Redis, tmp_path: Path, api: ApiProcess
) -> None:
    chromium = need_chromium()
    from playwright.sync_api import expect, sync_playwright

    # Given two jobs: 4 goldfish photos, 3 tench photos (2 above 0.5), 2 sharks
    store = ResultStore(redis_client)
    ModelLabels(redis_client).save(MODEL, LABELS)
    ModelRegistry(redis_client).loaded(MODEL)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(9):
        Image.new("RGB", (320, 240), (30 * i, 120, 200 - 20 * i)).save(photos / f"{i}.jpg")
    fish = [("goldfish", 1, 0.8 - i / 10) for i in range(4)] + [
        ("tench", 0, s) for s in (0.9, 0.6, 0.3)
    ]
    seed_job(store, "aquarium", [ok(str(photos / f"{i}.jpg"), top) for i, top in enumerate(fish)])
    time.sleep(0.01)
    seed_job(store, "sea", [ok(str(photos / f"{i}.jpg"), ("hammerhead", 4, 0.7)) for i in (7, 8)])

    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(api.base + "/")
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        expect(page.locator("#token-form")).to_be_hidden()

        # When a person searches for two labels at a minimum score
        page.fill("#search-labels", "Tench, hammerhead")
        page.fill("#search-min", "0.5")
        page.click("#search-form button")

        # Then the matching photos show, newest first, with their thumbnails and labels
        cards = page.locator("#search-cards .card")
        expect(cards).to_have_count(4)
        refs = [cards.nth(i).locator(".job-ref").inner_text() for i in range(4)]
        assert refs == ["sea #1", "sea #0", "aquarium #5", "aquarium #4"]
        expect(cards.nth(2).locator(".label.match .label-name")).to_have_text("tench")
        expect(cards.nth(2).locator(".label.match .score")).to_have_text("60.0%")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#search-cards .thumb img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length === 4",
            timeout=15_000,
        )
        expect(page.locator("#search-summary")).to_contain_text("4 photos with tench, hammerhead")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # And an unknown label says what it might have meant
        page.fill("#search-labels", "goldfishes")
        page.click("#search-form button")
        expect(page.locator("#search-summary")).to_have_text(
            'unknown label "goldfishes"; did you mean "goldfish"?'
        )
        expect(cards).to_have_count(0)
        browser.close()
