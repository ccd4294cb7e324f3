"""Headless Chromium for dashboard tests: Debian's ``chromium`` driven by Playwright.

We never run ``playwright install``: the browser is the distribution's package
(``make browser`` installs it), so the test runs offline. Under
``CI=true`` a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from tests.servers import need_or_fail

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_chromium() -> str:
    """The Chromium binary's path; skips (fails under CI) when it or Playwright is missing."""
    path = next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), None)
    path = path or shutil.which("chromium")
    problem = None
    if path is None:
        problem = "chromium not installed (make browser)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright not installed (pip install -e '.[dev]')"
    need_or_fail(problem)
    assert path is not None
    return path


def launch_chromium(playwright: Any, executable: str) -> Any:
    """A headless Chromium browser from the distribution's binary."""
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
