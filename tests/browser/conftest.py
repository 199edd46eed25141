"""A headless Chromium page (Debian's chromium, driven by playwright) for the browser tests.

Skipped when chromium or playwright is missing, unless RUNBOOK_REQUIRE_BROWSER=1 (CI), where a
missing browser fails. Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RUNBOOK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def browser():
    why = _missing()
    if why:
        if os.environ.get("RUNBOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # As root (CI) Chromium's sandbox cannot start; /dev/shm may be small.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page, 1280x900. ``page.off_page`` lists every request that left file:// and
    data: (a report must load nothing from the network)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.off_page = []  # type: ignore[attr-defined]
    pg.on(
        "request",
        lambda r: None if r.url.startswith(("file:", "data:")) else pg.off_page.append(r.url),
    )
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
