"""Headless Chromium for the browser tests: Debian's `chromium`, driven by playwright.

Skipped without chromium or playwright, unless RUNBOOK_REQUIRE_BROWSER=1 (CI), where a
missing browser fails. Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RUNBOOK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _missing(why: str):
    if os.environ.get("RUNBOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why} (RUNBOOK_REQUIRE_BROWSER=1)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        _missing(f"no browser at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page, 1280x900; requests leaving file:// fail the test that made them."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.off_page = []  # type: ignore[attr-defined]
    pg.on(
        "request",
        lambda r: None if r.url.startswith(("file:", "data:")) else pg.off_page.append(r.url),
    )
    yield pg
    context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
