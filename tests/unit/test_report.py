"""The run's report: summary data from canned reports, and the pages of real run folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from runbook_lib import report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "run-folders"
OLD = "20261202T050417Z-10.204.0.2"  # everything changed; summary without step lines
FAILED = "20261202T051606Z-127.0.0.1"  # failed in 07-registry; current summary


def step(name, status="ok", reason="as wanted", warnings=None, dry_run=False, **extra):
    return {
        "name": name,
        "status": status,
        "reason": reason,
        "actions": extra.pop("actions", []),
        "details": {"secret-looking": "not kept"},
        "seconds": 0.25,
        "dry_run": dry_run,
        **({"warnings": warnings} if warnings is not None else {}),
        "diffs": [{"path": "/etc/docker/daemon.json", "text": "+{}"}],
    }


# -- pure data ------------------------------------------------------------------------------


def test_step_line_keeps_what_a_reader_needs_and_tolerates_old_results():
    line = report.step_line(step("Swarm", "changed", "initialised", actions=["docker swarm init"]))
    assert line == {
        "name": "Swarm",
        "status": "changed",
        "reason": "initialised",
        "warnings": [],
        "actions": ["docker swarm init"],
        "seconds": 0.25,
        "dry_run": False,
        "host": None,  # a step of one host
    }


def test_notebook_lines_from_a_current_report():
    data = {
        "notebook": "01-preflight",
        "status": "ok",
        "changed": 0,
        "counts": {"ok": 1, "changed": 0, "verified": 1, "skipped": 0, "failed": 0},
        "warnings": ["Operating system: PID 1 is not systemd"],
        "steps": [
            step("Operating system", warnings=["PID 1 is not systemd"]),
            step("Port", "verified"),
        ],
    }
    lines = report.notebook_lines(data)
    assert lines["counts"]["verified"] == 1
    assert lines["warnings"] == ["Operating system: PID 1 is not systemd"]
    assert [s["name"] for s in lines["steps"]] == ["Operating system", "Port"]


def test_notebook_lines_from_an_old_report_count_and_collect_warnings():
    data = {
        "status": "changed",
        "changed": 1,
        "steps": [step("A"), step("B", "changed"), step("C", "skipped", warnings=["w"])],
    }
    lines = report.notebook_lines(data)
    assert lines["counts"] == {"ok": 1, "changed": 1, "verified": 0, "skipped": 1, "failed": 0}
    assert lines["warnings"] == ["C: w"]


def test_no_report_gives_empty_lines():
    assert report.notebook_lines(None) == {
        "steps": [],
        "counts": dict.fromkeys(report.STEP_STATUSES, 0),
        "warnings": [],
    }


@pytest.mark.parametrize(
    "statuses, expected",
    [
        (["ok", "ok", "skipped"], "ok"),
        (["ok", "changed", "skipped"], "changed"),
        (["changed", "failed", "skipped"], "failed"),
        (["changed", "interrupted", "skipped"], "interrupted"),
        ([], "ok"),
    ],
)
def test_run_status_is_the_worst_notebook(statuses, expected):
    assert report.run_status([{"status": s} for s in statuses]) == expected


def test_run_totals_add_counts_and_name_each_warning_s_notebook():
    notebooks = [
        {"name": "01-preflight", "counts": {"ok": 5, "verified": 1}, "warnings": ["OS: w1"]},
        {"name": "02-docker-engine", "counts": {"ok": 2, "changed": 1}, "warnings": []},
        {"name": "03-compose"},  # skipped after a failure: no counts
    ]
    counts, warnings = report.run_totals(notebooks)
    assert counts == {"ok": 7, "changed": 1, "verified": 1, "skipped": 0, "failed": 0}
    assert warnings == ["01-preflight: OS: w1"]


@pytest.mark.parametrize(
    "summary, expected",
    [
        ({"notebooks": [{"name": "a", "status": "ok", "changed": 0}]}, "nothing changed"),
        ({"check": True, "notebooks": [{"name": "a", "changed": 0}]}, "nothing to change"),
        (
            {"notebooks": [{"name": "a", "changed": 2}, {"name": "b", "changed": 1}]},
            "3 steps changed, in 2 notebooks",
        ),
        ({"check": True, "notebooks": [{"name": "a", "changed": 1}]}, "1 step would change"),
        (
            {"notebooks": [{"name": "a", "status": "ok"}, {"name": "b", "status": "failed"}]},
            "failed in b",
        ),
    ],
)
def test_headline(summary, expected):
    assert report.headline(summary).startswith(expected)


def test_the_report_reads_the_mime_type_the_notebooks_write():
    from runbook_lib import steps

    assert report.REPORT_MIME == steps.REPORT_MIME


# -- pages of real run folders --------------------------------------------------------------


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(FIXTURES, root)
    return root


def _tags_loading_from_the_network(html: str) -> list[str]:
    """<script src>, <link href>, <img src>, @import and url() that point off this folder."""
    found = re.findall(
        r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)=[\"']?(?:https?:)?//[^>]*>", html
    )
    found += re.findall(r"@import[^;]*|url\(\s*['\"]?(?:https?:)?//[^)]*\)", html)
    return found


def test_an_old_folder_gets_its_report_with_step_lines_read_from_the_notebooks(runs):
    folder = runs / OLD
    index = report.render_run(folder)
    html = index.read_text()
    # The first screen: host, outcome, what changed.
    assert "<h1>10.204.0.2" in html and "8 steps changed, in 5 notebooks" in html
    assert "<b>Swarm</b>: swarm initialised; this node is its manager" in html
    # One row per notebook, linked to its page; its steps under it.
    rows = re.findall(r'<tbody id="nb-([0-9]{2}-[a-z-]+)">', html)
    assert rows == [p.stem for p in sorted(folder.glob("*.ipynb"))]
    links = set(re.findall(r'href="([0-9]{2}-[a-z-]+\.html)"', html))
    assert links == {f"{r}.html" for r in rows}
    assert all((folder / link).exists() for link in links)
    assert "安装 Docker" in html  # the tutorial's titles, as text
    assert 'href="ca.crt"' in html and "not recorded" in html  # old: no end, no version
    assert (runs / "index.html").exists()


def test_a_notebook_page_has_no_code_and_no_parameters_cells(runs):
    folder = runs / OLD
    report.render_run(folder)
    page = (folder / "04-swarm.html").read_text()
    assert "swarm initialised" in page  # a step's output stays
    assert "初始化集群" in page  # the notebook's markdown stays
    assert (
        "jp-CodeMirrorEditor jp-Editor" not in page
        and "jp-CodeCell jp-Notebook-cell jp-mod-noOutputs" not in page
    )
    assert "context.start" not in page and "swarm.init(rb)" not in page
    for parameters_cell in ("ssh_password = None", "# Parameters", "registry_users = {"):
        assert parameters_cell not in page
    assert 'href="index.html"' in page  # back to the run


def test_no_page_loads_anything_from_the_network(runs):
    for folder in (runs / OLD, runs / FAILED):
        report.render_run(folder)
    pages = list(runs.rglob("*.html"))
    assert len(pages) == 2 + 1 + 9 + 7  # two indexes, the runs index, the notebooks
    for page in pages:
        assert _tags_loading_from_the_network(page.read_text()) == [], page.name
        assert "<script" not in page.read_text(), page.name


def test_a_failed_run_says_where_and_why_first(runs):
    folder = runs / FAILED
    html = report.render_run(folder).read_text()
    head = html[: html.index('id="notebooks"')]
    assert 'class="rb-outcome st-failed"' in head and "failed in 07-registry" in head
    assert "this node is not a swarm manager" in head
    assert "no step changed anything before the run stopped" in head
    assert '<a href="07-registry.html">' in head
    assert "not run: an earlier notebook stopped the run" in html  # 08 and 09
    page = (folder / "07-registry.html").read_text()
    assert "An Exception was encountered at" in page  # papermill's banner
    assert 'class="rb-outcome st-failed"' in page and "The failing cell is marked below" in page
    assert "parameters/lab-local.yaml" in html and "b610a1767842-dirty" in html
    assert "file:/var/lib/runbook-lab/client/registry-admin.password" in html


def test_the_runs_index_lists_runs_newest_first_with_their_outcome(runs):
    report.render_run(runs / OLD)
    html = (runs / "index.html").read_text()
    assert html.index(FAILED) < html.index(OLD)  # newest first
    assert f'<a href="{OLD}/index.html">' in html
    assert f"runbook report {FAILED}" in html  # not rendered yet: says how
    assert "failed in 07-registry" in html and "8 steps changed" in html


def test_planted_secrets_stay_out_of_every_page(runs, monkeypatch):
    """A run whose parameters reference secrets: the pages show references, never values."""
    planted = {"RB_PLANTED_SSH": "ssh-qJ8vW2xK9pL4", "RB_PLANTED_REG": "reg-Zt5nB7mQ3sR1"}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    secret_file = runs.parent / "portainer.secret"
    secret_file.write_text("ptn-Hx6cV8dN2wY5\n")
    folder = runs / FAILED
    summary = json.loads((folder / "summary.json").read_text())
    summary["parameters"].update(
        ssh_password="env:RB_PLANTED_SSH",
        registry_users={"admin": "env:RB_PLANTED_REG"},
        portainer_admin_password=f"file:{secret_file}",
    )
    (folder / "summary.json").write_text(json.dumps(summary))
    report.render_run(folder)
    text = "\n".join(p.read_text() for p in runs.rglob("*.html"))
    assert "env:RB_PLANTED_SSH" in text and f"file:{secret_file}" in text
    for value in [*planted.values(), "ptn-Hx6cV8dN2wY5"]:
        assert value not in text


def test_the_report_command_rewrites_a_folder_s_pages(runs, capsys):
    from runbook_lib.cli import main

    assert main(["report", str(runs / OLD)]) == 0
    assert str(runs / OLD / "index.html") in capsys.readouterr().out
    assert (runs / OLD / "01-preflight.html").exists()


def test_the_report_command_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    from runbook_lib.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err
