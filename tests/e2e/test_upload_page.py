"""The upload page as a person uses it: Debian's chromium (Playwright), `bulktag api`, a
real worker and redis-server.

Three files go through the page's real file input: two photos and a text file named
``.jpg``. Each shows at once as a card with its preview and a spinner; then the photos'
cards carry the top-3 of the plain torchvision pipeline and the text file's card the
reason it failed. A photo dropped on the drop zone (a real drop event) follows the
same path. A source is then submitted, and the job's actions used, with the
keyboard alone; the page must fit a 390 px phone. Screenshots of both layouts go to
``var/screenshots/``; ``docs/img/upload-desktop.png`` and ``upload-mobile.png`` are
copies of one run.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producer.samples import build_corpus
from tests.browser import launch_chromium, need_chromium
from tests.e2e.test_dashboard import TOKEN, ApiProcess
from tests.reference import load_reference_model, reference_top3
from tests.servers import REPO, running_worker

pytestmark = pytest.mark.e2e

SHOTS = REPO / "var" / "screenshots"
NOT_AN_IMAGE = "not an image: its content is text, whatever its name says"


@pytest.fixture
def upload_env(worker_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**worker_env, "BULKTAG_UPLOAD_DIR": str(tmp_path / "uploads")}


@pytest.fixture
def api(upload_env: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess({**upload_env, "BULKTAG_API_TOKEN": TOKEN}, tmp_path / "api.log")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until ``selector`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if page.evaluate(f"document.activeElement.matches({json.dumps(selector)})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got the keyboard focus")


def test_upload_page_tags_dropped_photos_and_runs_job_actions_by_keyboard(
    upload_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    dev_weights: Path,
    api: ApiProcess,
) -> None:
    chromium = need_chromium()
    from playwright.sync_api import expect, sync_playwright

    # Given two photos and a text file that pretends to be a JPEG
    photos = build_corpus(tmp_path / "photos", 2, sizes=[(640, 480), (480, 640)]).unique
    fake = tmp_path / "notes.jpg"
    fake.write_text("shopping list: milk, eggs, coffee\n")
    SHOTS.mkdir(parents=True, exist_ok=True)

    with (
        running_worker(upload_env, tmp_path / "worker.log", redis_client, 1),
        sync_playwright() as pw,
    ):
        browser = launch_chromium(pw, chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(api.base + "/")
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        expect(page.locator("#token-form")).to_be_hidden()

        # When the three files are chosen through the page's file input
        page.set_input_files("#upload-input", [str(p) for p in photos] + [str(fake)])
        # Then three cards show at once, each with its preview and a spinner
        cards = page.locator("#upload-cards .card")
        expect(cards).to_have_count(3)
        assert page.locator("#upload-cards .card .spin").count() == 3
        # And the photos' cards get their three labels, the text file's its reason
        expect(page.locator("#upload-cards .card.status-ok")).to_have_count(2, timeout=90_000)
        expect(page.locator("#upload-cards .card.status-error")).to_have_count(1)
        expect(page.locator("#upload-cards .spin")).to_have_count(0)
        # newest first: the cards are in the order the files were chosen
        names = page.locator("#upload-cards .card .name").all_inner_texts()
        assert names == [photos[0].name, photos[1].name, "notes.jpg"]
        expect(cards.nth(2).locator(".reason")).to_have_text(NOT_AN_IMAGE)
        model = load_reference_model(dev_weights)
        for i, photo in enumerate(photos):
            labels = cards.nth(i).locator(".label")
            expect(labels).to_have_count(3)
            shown = labels.evaluate_all(
                "lis => lis.map(li => [Number(li.dataset.index), Number(li.dataset.score)])"
            )
            indices, scores = reference_top3(model, photo)
            assert [index for index, _ in shown] == indices, photo.name
            for (_, got), want in zip(shown, scores, strict=True):
                assert abs(got - want) <= 1e-4, photo.name
            assert cards.nth(i).locator(".score").first.inner_text().endswith("%")
        previews = page.eval_on_selector_all(
            "#upload-cards .card.status-ok .thumb img",
            "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)",
        )
        assert len(previews) == 2 and all(w > 0 for w in previews), previews
        expect(page.locator("#upload-status")).to_contain_text("2 tagged, 1 failed")
        page.screenshot(path=str(SHOTS / "upload-desktop.png"), full_page=True)

        # Dropping files on the drop zone works like choosing them (a real drop event
        # carrying a DataTransfer; the same photo again is answered from the cache)
        payload = base64.b64encode(photos[0].read_bytes()).decode()
        page.evaluate(
            """([name, b64]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
                const zone = document.getElementById("dropzone");
                zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true }));
                zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
            }""",
            ["dropped.jpg", payload],
        )
        expect(cards).to_have_count(4)
        dropped = cards.nth(0)  # newest first
        expect(dropped.locator(".name")).to_have_text("dropped.jpg")
        expect(dropped).to_have_class(re.compile(r"status-ok"), timeout=60_000)
        shown = dropped.locator(".label").evaluate_all(
            "lis => lis.map(li => Number(li.dataset.index))"
        )
        assert shown == reference_top3(model, photos[0])[0]

        # When a source is submitted with the keyboard alone (Tab, type, Enter)
        page.locator("body").focus()
        tab_to(page, "#source-input")
        page.keyboard.type(str(photos[0].parent))
        page.keyboard.press("Enter")
        status = page.locator("#action-status")
        expect(status).to_contain_text("created with 2 URIs", timeout=15_000)
        job = status.inner_text().split()[1]
        row = page.locator(f'tr[data-job="{job}"]')
        expect(row.locator("td.state")).to_have_text("done", timeout=60_000)
        # And its row, then its actions, are reached and used from the keyboard
        tab_to(page, f'tr[data-job="{job}"]')
        page.keyboard.press("Enter")
        expect(page.locator("#gallery-job")).to_have_text(job)
        tab_to(page, "#retry-job")
        page.keyboard.press("Enter")
        expect(status).to_have_text(f"Job {job} has no errors to retry.")
        tab_to(page, "#cancel-job")
        page.keyboard.press("Enter")
        expect(status).to_have_text(f"Job {job} is done: chunks not yet started are skipped.")
        # A bad source is answered in words, not silently
        page.fill("#source-input", "/etc")
        page.keyboard.press("Enter")
        expect(status).to_contain_text("Could not submit /etc:")
        expect(status).to_contain_text("outside the allowed roots")
        expect(status).to_have_class("action-status failed")

        # The page fits a 390 px phone: nothing wider than the screen, cards two a row
        page.set_viewport_size({"width": 390, "height": 844})
        page.evaluate("window.scrollTo(0, 0)")
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390, f"page is {overflow}px wide at 390px"
        box = cards.nth(0).bounding_box()
        assert box is not None and box["width"] < 390 / 2
        expect(page.locator("#upload-input")).to_be_visible()
        page.screenshot(path=str(SHOTS / "upload-mobile.png"), full_page=True)
        browser.close()

    for name in ("upload-desktop.png", "upload-mobile.png"):
        data = (SHOTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, name
