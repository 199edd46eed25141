"""Shared fixtures: the local lab's SSH target (tests/lab/up.sh) as hosts and parameters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook_lib.hosts import LocalHost, SSHHost
from runbook_lib.secrets import Secret

ROOT = Path(__file__).resolve().parents[1]
LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/lib/runbook-lab"))
CLIENT = LAB_DIR / "client"
LAB_ADDRESS, LAB_PORT = "127.0.0.1", 2222


def _lab_up() -> bool:
    from runbook_lib.hosts import port_open

    # os.access, not Path.exists: the lab's folder is root's, and a normal user may not look.
    return os.access(CLIENT / "id_ed25519", os.R_OK) and port_open(LAB_ADDRESS, LAB_PORT, 1.0)


def lab_missing(why: str) -> None:
    """Skip a lab test, saying why; fail it instead when RUNBOOK_REQUIRE_LAB=1."""
    if os.environ.get("RUNBOOK_REQUIRE_LAB") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def lab() -> Path:
    """The lab's client folder; skips (or fails, when RUNBOOK_REQUIRE_LAB=1) without a lab."""
    if not _lab_up():
        lab_missing(
            "the lab is not up: run `bash tests/lab/up.sh`"
            if os.geteuid() == 0
            else "the lab is root's: run the lab tests as root (`bash tests/lab/up.sh` makes it)"
        )
    return CLIENT


def lab_host(user: str = "root", **kwargs) -> SSHHost:
    kwargs.setdefault("key_file", str(CLIENT / "id_ed25519"))
    kwargs.setdefault("known_hosts", str(CLIENT / "known_hosts"))
    return SSHHost(LAB_ADDRESS, port=LAB_PORT, user=user, **kwargs)


@pytest.fixture
def root_host(lab):
    with lab_host("root") as h:
        yield h


@pytest.fixture
def sudo_host(lab):
    pw = Secret(f"file:{CLIENT / 'deploy.password'}", parameter="sudo_password")
    with lab_host("deploy", sudo_password=pw) as h:
        yield h


@pytest.fixture
def nopass_host(lab):
    with lab_host("nopass") as h:
        yield h


class UserHost(LocalHost):
    """This machine as the user running the tests, never raised to root: the unit tests'
    commands work in temporary folders, and a normal user may have no sudo. As root it is
    LocalHost."""

    def _wrap(self, argv, data, privileged):
        return argv, data


def stand_in_notebook(path: Path, code: str) -> None:
    """A one-cell notebook for the runner's own tests (no host behind it)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def papermill_alone(notebook: str, params_file: Path, out: Path) -> dict:
    """A notebook run as an operator without the runner runs it, ``papermill NB OUT -f
    PARAMS`` in a process of its own; its report. Fails the test with papermill's error."""
    import subprocess

    from runbook_lib import runner

    argv = [str(ROOT / ".venv/bin/papermill"), str(ROOT / "notebooks" / f"{notebook}.ipynb")]
    argv += [str(out), "-f", str(params_file), "--cwd", str(ROOT / "notebooks")]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return runner.read_report(out)
