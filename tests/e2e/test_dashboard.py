"""The dashboard end to end: real redis-server, real worker, `bulktag api`, headless Chromium.

Images are submitted over HTTP, the page is opened in Debian's chromium (Playwright),
and the test reads the DOM the way a person reads the screen: the job row says done
with the right counts, the gallery has one card per URI with three labels (or the
error's reason), the untrained-weights banner is up. The screenshot it saves goes to
``var/screenshots/dashboard.png``; ``docs/img/dashboard.png`` is a copy of one run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producer.samples import build_corpus
from tests.browser import launch_chromium, need_chromium
from tests.servers import BULKTAG, REPO, free_port, running_worker

pytestmark = pytest.mark.e2e

# Written on every run under var/ (git-ignored); docs/img/dashboard.png is a copy of one.
SCREENSHOT = REPO / "var" / "screenshots" / "dashboard.png"
TOKEN = "dashboard-test-token"
JOB = "holiday-photos"


class ApiProcess:
    """`bulktag api` as a subprocess on a free port (the CLI command itself is under test)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.log = log
        self.proc = subprocess.Popen(
            [*BULKTAG, "api", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as resp:
                    if json.load(resp)["status"] == "ok":
                        return
            except (OSError, urllib.error.URLError):
                pass
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError(f"API not healthy; log:\n{self.log.read_text()[-3000:]}")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.base}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read().decode()
        return json.loads(raw) if resp.headers["content-type"] == "application/json" else raw

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@pytest.fixture
def api(worker_env: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess({**worker_env, "BULKTAG_API_TOKEN": TOKEN}, tmp_path / "api.log")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def test_dashboard_shows_live_job_and_gallery(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, api: ApiProcess
) -> None:
    chromium = need_chromium()
    from playwright.sync_api import expect, sync_playwright

    # Given 12 small photos (3 byte-identical repeats) and one file that is not an image
    corpus = build_corpus(
        tmp_path / "photos", 12, sizes=[(480, 360), (360, 480)], repeat_fraction=0.25, broken=1
    )
    n = len(corpus.all)
    with (
        running_worker(worker_env, tmp_path / "worker.log", redis_client, 1),
        sync_playwright() as pw,
    ):
        browser = launch_chromium(pw, chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(api.base + "/")
        # the API wants a token: the page asks for it, then goes live with no jobs yet
        expect(page.locator("#token-form")).to_be_visible()
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        expect(page.locator("#token-form")).to_be_hidden()
        expect(page.locator("#no-jobs")).to_be_visible()

        # When the photos are submitted over HTTP while the page is open
        created = api.call(
            "POST", "/jobs", {"source": str(tmp_path / "photos"), "job": JOB, "chunk_size": 4}
        )
        assert created["total"] == n and created["state"] in ("running", "done")

        row = page.locator(f'tr[data-job="{JOB}"]')
        # Then the page picks the job up by polling and its row reaches done, right counts
        expect(row.locator("td.state")).to_have_text("done", timeout=60_000)
        expect(row.locator("td.ok")).to_have_text(str(n - 1))
        expect(row.locator("td.error")).to_have_text("1")
        expect(row.locator("td.deduped")).to_have_text(str(len(corpus.repeats)))
        expect(row.locator(".done")).to_have_text(f"{n} / {n}")
        assert float(row.locator("td.rate").inner_text()) > 0  # images/s was shown

        # And the gallery has one card per URI: 3 labels each, or the error reason
        row.click()
        cards = page.locator("#cards .card")
        expect(cards).to_have_count(n, timeout=15_000)
        ok_cards = page.locator("#cards .card.status-ok")
        expect(ok_cards).to_have_count(n - 1)
        for i in range(n - 1):
            expect(ok_cards.nth(i).locator(".label")).to_have_count(3)
            expect(ok_cards.nth(i).locator(".thumb img")).to_have_count(1, timeout=15_000)
        # the failed URI's card carries the reason its record holds
        records = [json.loads(x) for x in api.call("GET", f"/jobs/{JOB}/results").splitlines()]
        (reason,) = [r["error"] for r in records if r["status"] == "error"]
        expect(page.locator("#cards .card.status-error .reason")).to_have_text(reason)
        expect(page.locator("#error-count")).to_have_text("1")
        # every thumbnail loaded and decoded (a failed image has naturalWidth 0)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#cards .thumb img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=15_000,
        )
        widths = page.eval_on_selector_all(
            "#cards .thumb img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert len(widths) == n - 1 and all(0 < w <= 256 for w in widths), widths
        # the worker runs the seeded untrained checkpoint: the page must say so
        expect(page.locator("#untrained-banner")).to_be_visible()
        expect(page.locator("#untrained-banner")).to_contain_text("labels are meaningless")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        browser.close()

        # The page showed what the API streams
        assert len(records) == n
        assert sum(1 for r in records if r["status"] == "ok" and len(r["top3"]) == 3) == n - 1

    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000, "screenshot suspiciously small: an empty page?"
