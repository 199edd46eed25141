"""The whole runbook on the lab's fresh Debian host, which starts without Docker.

First run: Docker is installed from Debian's packages, started, the swarm made, the registry
deployed and a push and pull verified. Second run, as a user with password-less sudo:
nothing changes.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from runbook_lib import runner
from runbook_lib.hosts import port_open
from tests.conftest import ROOT

pytestmark = pytest.mark.fresh
FRESH = ROOT / "tests/lab/fresh-host.sh"


@pytest.fixture(scope="module")
def fresh_runs(tmp_path_factory):
    reset = subprocess.run(["bash", str(FRESH), "reset"], capture_output=True, text=True)
    up = subprocess.run(["bash", str(FRESH), "up"], capture_output=True, text=True)
    if up.returncode != 0 or not port_open("10.204.0.2", 22, 2.0):
        pytest.fail(f"the fresh host did not come up:\n{reset.stderr}\n{up.stdout}\n{up.stderr}")
    tmp = tmp_path_factory.mktemp("fresh")
    params = yaml.safe_load((ROOT / "parameters/lab.yaml").read_text())
    as_nopass = tmp / "nopass.yaml"
    as_nopass.write_text(yaml.safe_dump({**params, "ssh_user": "nopass"}))
    first = runner.run(ROOT / "parameters/lab.yaml", out_root=tmp / "runs", log=lambda *_: None)
    second = runner.run(as_nopass, out_root=tmp / "runs", log=lambda *_: None)
    return first, second


def test_first_run_installs_docker_and_verifies_the_registry(fresh_runs):
    first, _ = fresh_runs
    assert first.failed is None, first.failed
    s = {n.name: n.status for n in first.notebooks}
    for name in ("02-docker-engine", "04-swarm", "05-tls", "06-users", "07-registry"):
        assert s[name] == "changed", s
    assert s["08-verify"] == "changed"  # the image is new in the registry


def test_second_run_changes_nothing(fresh_runs):
    _, second = fresh_runs
    assert second.failed is None, second.failed
    assert [(n.name, n.changed) for n in second.notebooks] == [
        (n.name, 0) for n in second.notebooks
    ]
