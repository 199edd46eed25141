"""The whole runbook against the local lab, as `runbook run` does it.

From a reset host (Docker installed, no swarm, no files): a first run as root changes
things and verifies a push and pull; a second run, as a sudo user with a password, changes
nothing; a dry run changes nothing on the host. Unique secrets are planted and searched for
in everything the runs leave and in the process list sampled during the runs.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from runbook_lib import runner
from tests.conftest import CLIENT, ROOT, papermill_alone

pytestmark = pytest.mark.lab

WORK = "/home/docker"


def host_state() -> str:
    """What the runbook may change on the lab host, as text to compare: its files (names,
    modes, owners, content), the trust under certs.d, Docker's daemon.json, the swarm, each
    service's whole spec, secrets, volumes, images and the firewall's allow-list."""
    script = f"""
    find {WORK} /etc/docker -printf '%p %m %u\\n' 2>/dev/null | sort
    find {WORK} /etc/docker -type f -exec sha256sum {{}} + 2>/dev/null | sort
    docker info --format '{{{{.Swarm.LocalNodeState}}}}'
    for s in $(docker service ls -q); do docker service inspect --format '{{{{json .Spec}}}}' $s; done
    docker secret ls --format '{{{{.Name}}}}' | sort
    docker volume ls --format '{{{{.Name}}}}' | sort
    docker image ls --no-trunc --format '{{{{.Repository}}}}:{{{{.Tag}}}} {{{{.ID}}}}' | sort
    iptables -S RUNBOOK-ALLOW 2>/dev/null
    """
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout


class ProcessSampler(threading.Thread):
    """Collects every command line seen on the host while a run goes on."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.seen.update(out.splitlines())
            time.sleep(0.05)


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):
    subprocess.run(["bash", str(ROOT / "tests/lab/reset.sh")], check=True, capture_output=True)
    tmp = tmp_path_factory.mktemp("runbook")
    registry_password = "rb-registry-" + secrets.token_hex(8)
    os.environ["RB_TEST_REGISTRY_PASSWORD"] = registry_password
    base = yaml.safe_load((ROOT / "parameters/lab-local.yaml").read_text())
    base["registry_users"] = {"admin": "env:RB_TEST_REGISTRY_PASSWORD"}
    as_root = tmp / "root.yaml"
    as_root.write_text(yaml.safe_dump(base))
    as_deploy = tmp / "deploy.yaml"
    as_deploy.write_text(
        yaml.safe_dump(
            {**base, "ssh_user": "deploy", "sudo_password": f"file:{CLIENT / 'deploy.password'}"}
        )
    )
    sampler = ProcessSampler()
    sampler.start()
    out = tmp / "runs"
    first = runner.run(as_root, out_root=out, log=lambda *_: None)
    second = runner.run(as_deploy, out_root=out, log=lambda *_: None)
    before = host_state()
    check = runner.run(as_root, check=True, out_root=out, log=lambda *_: None)
    after = host_state()
    sampler.stop.set()
    sampler.join()
    yield {
        "first": first,
        "second": second,
        "check": check,
        "state": (before, after),
        "secrets": [
            registry_password,
            (CLIENT / "deploy.password").read_text().strip(),
            # As Docker's stored logins and HTTP Basic auth carry it.
            base64.b64encode(f"admin:{registry_password}".encode()).decode(),
        ],
        "processes": sampler.seen,
        "out": out,
        "params": as_root,
    }
    os.environ.pop("RB_TEST_REGISTRY_PASSWORD", None)


def statuses(summary):
    return {n.name: (n.status, n.changed) for n in summary.notebooks}


def test_first_run_builds_and_verifies(runs):
    first = runs["first"]
    assert first.failed is None, first.failed
    s = statuses(first)
    assert [n.name for n in first.notebooks] == [
        p.stem for p in runner.select(runner.notebooks(), None, None)
    ]
    for name in ("04-swarm", "05-tls", "06-users", "07-registry"):
        assert s[name][0] == "changed", s
    # The push adds the image to the registry: a change (with the tag, removal and pull).
    assert s["08-verify"][0] == "changed", s
    folder = Path(first.folder)
    assert (folder / "summary.json").exists() and (folder / "ca.crt").exists()


def test_second_run_as_sudo_user_changes_nothing(runs):
    second = runs["second"]
    assert second.failed is None, second.failed
    assert {n.name: n.changed for n in second.notebooks} == {n.name: 0 for n in second.notebooks}


def test_check_mode_changes_nothing(runs):
    check = runs["check"]
    assert check.failed is None, check.failed
    before, after = runs["state"]
    assert before == after
    assert "manager_registry" in after


def test_no_secret_in_any_artifact(runs):
    # The registry's private key too: its base64 body, line by line.
    key = Path(f"{WORK}/certs/localhost.key").read_text().splitlines()[1:-1]
    for path in runs["out"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in [*runs["secrets"], *key]:
                assert value.encode() not in data, f"secret found in {path}"


def test_no_secret_on_a_command_line(runs):
    # A positive control: the sampler saw the runbook's own commands on the host (the push
    # lasts long enough to be seen), so an empty search means something.
    seen = runs["processes"]
    assert any("docker push localhost:5000/" in line for line in seen), (
        "the sampler missed the push"
    )
    for line in runs["processes"]:
        for value in runs["secrets"]:
            assert value not in line


def test_no_login_left_on_the_host(runs):
    config = Path("/root/.docker/config.json")
    assert not config.exists() or "localhost:5000" not in config.read_text()


def test_secret_files_are_owner_only(runs):
    out = subprocess.run(
        [
            "stat",
            "-c",
            "%a %U %G %n",
            f"{WORK}/certs",
            f"{WORK}/auth",
            f"{WORK}/auth/htpasswd",
            f"{WORK}/certs/localhost.key",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    modes = {line.split()[3]: tuple(line.split()[:3]) for line in out if line}
    assert modes == {
        f"{WORK}/certs": ("700", "root", "root"),
        f"{WORK}/auth": ("700", "root", "root"),
        f"{WORK}/auth/htpasswd": ("600", "root", "root"),
        f"{WORK}/certs/localhost.key": ("600", "root", "root"),
    }


@pytest.mark.parametrize("notebook", ["07-registry", "11-remove-nodes", "12-certificates"])
def test_a_notebook_runs_alone_under_papermill(runs, tmp_path, notebook):
    """A tutorial notebook and the day-2 ones that change nothing on a built host."""
    report = papermill_alone(notebook, runs["params"], tmp_path / f"{notebook}.ipynb")
    # 11 with no remove_nodes has nothing to do: each of its steps says so, skipped.
    assert (report["status"], report["changed"]) == ("skipped" if "11" in notebook else "ok", 0)


def test_no_secret_in_files_or_shell_history_on_the_host(runs):
    """The plain passwords are written nowhere on the host (htpasswd holds a hash)."""
    places = [
        "/home/docker",
        "/etc/docker",
        "/root/.docker",
        "/root/.bash_history",
        "/home/deploy",
        "/tmp",
    ]
    for value in runs["secrets"]:
        r = subprocess.run(
            ["grep", "-rlsF", "--exclude=deploy.password", value, *places],
            capture_output=True,
            text=True,
        )
        hits = [p for p in r.stdout.splitlines() if not p.startswith("/tmp/pytest-")]
        assert hits == [], f"secret found in {hits}"


def test_the_password_file_holds_bcrypt_hashes_at_the_documented_cost(runs):
    """The README's bcrypt cost 10, as written on the host."""
    line = Path(f"{WORK}/auth/htpasswd").read_text().splitlines()[0]
    user, hashed = line.split(":", 1)
    assert user == "admin" and hashed.startswith("$2y$10$"), hashed[:7]
