"""A run's record however it ends: summary.json and index.html after a SIGTERM mid-notebook,
and no planted secret in either."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from runbook_lib import runner
from tests.conftest import stand_in_notebook

PLANTED = "planted-Kq3vX9wZ7mB2"


@pytest.fixture
def params(tmp_path, monkeypatch) -> Path:
    """Parameters whose host is a loopback port nobody answers on, and a planted password."""
    import socket

    monkeypatch.setenv("RB_TEST_REGISTRY_PW", PLANTED)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        f = tmp_path / "p.yaml"
        f.write_text(
            f"host: 127.0.0.1\nssh_port: {server.getsockname()[1]}\nregistry_host: registry.test\n"
            "registry_users: {admin: env:RB_TEST_REGISTRY_PW}\n"
        )
        yield f


def _folder_text(folder: Path) -> str:
    return "\n".join(p.read_text() for p in folder.rglob("*") if p.is_file())


def test_a_run_stopped_by_sigterm_records_the_interrupted_notebook(tmp_path, monkeypatch, params):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    stand_in_notebook(nbs / "01-quick.ipynb", "print('one')")
    stand_in_notebook(
        nbs / "02-slow.ipynb", "import time\nprint('started', flush=True)\ntime.sleep(30)"
    )
    stand_in_notebook(nbs / "03-after.ipynb", "print('not reached')")
    monkeypatch.setattr(runner, "NOTEBOOKS", nbs)
    f = params
    lines: list[str] = []

    def log(line):
        lines.append(line)
        if "01-quick" in line:  # the first notebook is done: stop the run in the second
            threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()

    with pytest.raises(runner.Terminated):
        runner.run(f, out_root=tmp_path / "runs", log=log)
    folder = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert [(n["name"], n["status"]) for n in summary["notebooks"]] == [
        ("01-quick", "ok"),
        ("02-slow", "interrupted"),
        ("03-after", "skipped"),
    ]
    slow = summary["notebooks"][1]
    assert slow["error"] == "02-slow: stopped by SIGTERM" and slow["output"] == "02-slow.ipynb"
    assert "started" in (folder / "02-slow.ipynb").read_text()  # what ran so far
    assert summary["finished"] and summary["seconds"] > 1
    assert summary["params_file"] == str(f) and summary["version"]
    index = (folder / "index.html").read_text()
    assert "interrupted in 02-slow" in index and "stopped by SIGTERM" in index
    assert (folder / "02-slow.html").exists() and (tmp_path / "runs" / "index.html").exists()
    assert any(line.startswith("INTERRUPTED in 02-slow") for line in lines)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back
    text = _folder_text(tmp_path / "runs")
    assert "env:RB_TEST_REGISTRY_PW" in text and PLANTED not in text


def test_a_run_writes_its_report_before_it_says_done(tmp_path, monkeypatch, params, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    stand_in_notebook(nbs / "01-one.ipynb", "print('one')")
    monkeypatch.setattr(runner, "NOTEBOOKS", nbs)
    f = params

    class Args:
        params, start, only, check, out = str(f), None, None, False, str(tmp_path / "runs")

    assert runner.main_run(Args) == 0
    done = capsys.readouterr().out.splitlines()[-1]
    assert done.startswith("done: 0 step(s) changed; report: ")
    index = Path(done.split("report: ")[1])
    assert index.exists() and (index.parent / "01-one.html").exists()
    summary = json.loads((index.parent / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["counts"]["failed"] == 0
    assert summary["parameters"]["registry_users"] == {"admin": "env:RB_TEST_REGISTRY_PW"}
    assert PLANTED not in _folder_text(tmp_path / "runs")


def test_a_run_stopped_before_its_first_notebook_is_recorded_as_interrupted(
    tmp_path, monkeypatch, params
):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    stand_in_notebook(nbs / "01-quick.ipynb", "print('one')")
    monkeypatch.setattr(runner, "NOTEBOOKS", nbs)
    lines: list[str] = []

    def log(line):
        lines.append(line)
        if line.startswith("run folder:"):  # accepted, the record begun: no notebook yet
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(runner.Terminated):
        runner.run(params, out_root=tmp_path / "runs", log=log)
    folder = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stopped"] == "stopped by SIGTERM"
    assert any(line.startswith("INTERRUPTED between notebooks") for line in lines)
