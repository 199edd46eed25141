"""A run's report as a person opens it: index.html in headless Chromium, then a notebook."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runbook_lib import report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "run-folders"
CHANGED = "20261202T050417Z-10.204.0.2"
FAILED = "20261202T051606Z-127.0.0.1"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "runs"
    shutil.copytree(FIXTURES, root)
    for name in (CHANGED, FAILED):
        report.render_run(root / name)
    return root


def test_a_run_s_index_then_one_of_its_notebooks(page, runs, artifacts):
    page.goto((runs / CHANGED / "index.html").as_uri())
    outcome = page.locator("#outcome")
    assert outcome.locator("h1").inner_text().startswith("10.204.0.2")
    assert "8 steps changed, in 5 notebooks" in outcome.inner_text()
    # The first screen says host, outcome and what changed.
    assert page.locator("#changes li").first.is_visible()
    assert page.locator("#changes li").first.bounding_box()["y"] < 900
    page.screenshot(path=artifacts / "report-index.png")
    page.screenshot(path=artifacts / "report-index-full.png", full_page=True)

    rows = page.locator("#notebook-table tr.rb-notebook")
    assert rows.count() == 9
    first = rows.nth(0).inner_text()
    assert "目标 / 前提条件" in first and "ok" in first
    swarm = page.locator("#nb-04-swarm")
    assert "changed" in swarm.locator("tr.rb-notebook").inner_text()
    assert "Swarm: swarm initialised" in swarm.locator("tr.rb-step").first.inner_text()
    # The tutorial's Chinese titles: the page names a CJK font (Debian: fonts-noto-cjk).
    assert "Noto Sans CJK SC" in page.evaluate("getComputedStyle(document.body).fontFamily")

    swarm.locator("tr.rb-notebook a").click()
    page.wait_for_load_state()
    assert page.url.endswith("/04-swarm.html")
    assert page.locator("h1", has_text="初始化集群").count() == 1
    assert page.get_by_text("swarm initialised; this node is its manager").first.is_visible()
    assert page.locator(".jp-CodeMirrorEditor").count() == 0  # no code cells
    page.screenshot(path=artifacts / "report-notebook.png")
    page.locator("#rb-header a").first.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/{CHANGED}/index.html")
    assert page.off_page == []  # nothing asked from the network


def test_a_failed_run_and_the_list_of_runs(page, runs, artifacts):
    page.goto((runs / "index.html").as_uri())
    table = page.locator("#runs tbody tr")
    assert table.count() == 2
    assert "failed in 07-registry" in table.nth(0).inner_text()
    page.screenshot(path=artifacts / "report-runs.png")
    table.nth(0).locator("a").click()
    page.wait_for_load_state()
    problem = page.locator("#problem")
    assert "this node is not a swarm manager" in problem.inner_text()
    page.screenshot(path=artifacts / "report-failed.png")
    problem.locator("a").click()
    page.wait_for_load_state()
    assert page.get_by_text("An Exception was encountered at").first.is_visible()
    page.screenshot(path=artifacts / "report-failed-notebook.png", full_page=True)
    assert page.off_page == []
