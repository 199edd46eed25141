"""JupyterLab as an operator meets it: open 01, choose the lab's parameters in the form, run.

JupyterLab runs on a free localhost port with a token and private configuration, runtime,
settings and workspace folders, on a copy of the notebooks; the operator's choice goes to a
temporary XDG_CONFIG_HOME. Notebook 01 changes nothing on the host.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01-preflight.ipynb"
# A cell the test adds to its copy: a command's output streamed into a progress display,
# over the lab's SSH connection, as the long steps do.
PROGRESS_CELL = """from runbook_lib import progress

with progress.activity("sh: four lines, one a second") as p:
    rb.host.run(
        ["sh", "-c", "for i in 1 2 3 4; do echo line $i; sleep 1; done"],
        privileged=False,
        on_line=p.line,
    )"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path, lab):
    work = tmp_path / "work"
    (work / "notebooks").mkdir(parents=True)
    shutil.copytree(ROOT / "parameters", work / "parameters")
    nb = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if "context.start" in c.source)
    cell = nbformat.v4.new_code_cell(PROGRESS_CELL)
    cell.id = "progress"
    nb.cells.insert(start + 1, cell)
    nbformat.write(nb, work / "notebooks" / NOTEBOOK)
    dirs = {
        name: tmp_path / name for name in ("config", "runtime", "settings", "workspaces", "xdg")
    }
    for d in dirs.values():
        d.mkdir()
    # No question about Jupyter's news over the notebook.
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "XDG_CONFIG_HOME": str(dirs["xdg"]),
    }
    env.pop("RUNBOOK_HEADLESS", None)
    port, token = _free_port(), secrets.token_hex(16)
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={work}",
        f"--IdentityProvider.token={token}",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = (tmp_path / "jupyterlab.log").open("w")
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()}"
                    )
                time.sleep(0.2)
        yield {
            "url": f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}",
            "work": work,
            "xdg": dirs["xdg"],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def _idle(page, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "() => document.querySelector('.jp-Notebook')"
        " && !document.querySelector('.jp-Notebook .jp-InputArea-prompt')?.textContent.includes('*')"
        " && [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')]"
        ".every(p => !p.textContent.includes('*'))",
        timeout=timeout,
    )


def test_form_run_and_progress(jupyterlab, page, artifacts):
    try:
        _operator(jupyterlab, page, artifacts)
    except BaseException:
        page.screenshot(path=str(artifacts / "jupyterlab-failed.png"))
        print(page.locator(".jp-Notebook").inner_text())
        raise


def _operator(jupyterlab, page, artifacts):
    planted = "planted-" + secrets.token_hex(8)
    page.goto(jupyterlab["url"])
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "() => document.body.textContent.includes('Kernel status: Idle')", timeout=60_000
    )
    page.wait_for_timeout(500)
    page.keyboard.press("Control+b")  # the file browser away: the notebook is the subject
    # Opening the notebook (and connecting its kernel) does not mark it modified.
    assert page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0

    # Nothing chosen yet: the start cell shows the form and stops the run there.
    form = page.locator(".runbook-form")
    for attempt in range(3):  # a run sent while the kernel still settles can be lost
        _menu(page, "Run", "Run All Cells")
        try:
            form.wait_for(timeout=15_000)
            break
        except Exception:
            if attempt == 2:
                raise
    assert page.locator("text=ParametersNeeded").count() == 1
    page.locator(".runbook-use").click()
    page.locator(".runbook-error-host >> text=required").wait_for(timeout=10_000)
    form.screenshot(path=str(artifacts / "jupyterlab-form-errors.png"))

    page.locator(".runbook-file input").fill("../parameters/lab-local.yaml")
    page.locator(".runbook-load").click()
    page.wait_for_function(
        "() => document.querySelector('.runbook-field-host input')?.value === '127.0.0.1'",
        timeout=10_000,
    )
    form.locator("text=lab-local.yaml: valid").wait_for(timeout=10_000)
    assert page.locator(".runbook-error-host").inner_text().strip() == ""  # checked again
    form.screenshot(path=str(artifacts / "jupyterlab-form.png"))
    # A typed password: kept in the kernel only.
    form.locator(".lm-TabBar-tab", has_text="Portainer").click()
    page.locator(".runbook-password-portainer_admin_password input").fill(planted)
    page.locator(".runbook-use").click()
    page.locator(".runbook-saved").wait_for(timeout=20_000)

    # Run again: the saved choice is used, the steps report, the progress shows and ends.
    _menu(page, "Run", "Run All Cells")
    bar = page.locator(".jp-OutputArea .widget-hprogress")
    bar.first.wait_for(timeout=30_000)
    bar.first.evaluate("el => el.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "jupyterlab-run.png"))
    page.locator("text=sh: four lines, one a second: done in").wait_for(timeout=30_000)
    page.locator("text=01-preflight:").first.wait_for(timeout=30_000)
    _idle(page)
    text = page.locator(".jp-Notebook").inner_text()
    for step in ("Operating system", "Privileges", "Registry port", "Registry address"):
        assert step in text
    assert "Parameters:" in text and "lab-local.yaml" in text
    assert bar.count() == 0  # the bar gave way to its plain final line

    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", timeout=10_000
    )
    saved = (jupyterlab["work"] / "notebooks" / NOTEBOOK).read_text()
    assert "Operating system" in saved
    choice = jupyterlab["xdg"] / "swarm-registry-runbook" / "lab.yaml"
    assert oct(choice.stat().st_mode & 0o777) == "0o600"
    for where in (saved, choice.read_text()):
        assert planted not in where
    assert "portainer_admin_password: prompt" in choice.read_text()
