"""Faults against the local lab: the registry's task killed, the engine restarted, the SSH
connection dropped in the middle of a notebook, and runs stopped after each notebook."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest

from runbook_lib import runner
from tests.conftest import ROOT
from tests.integration.test_runbook import host_state

pytestmark = pytest.mark.lab
PARAMS = ROOT / "parameters/lab-local.yaml"
QUIET = {"log": lambda *_: None}


def sh(script: str) -> str:
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, f"{script}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def run(tmp_path, params=PARAMS, **kwargs):
    return runner.run(params, out_root=tmp_path / "runs", **QUIET, **kwargs)


def assert_clean(summary):
    assert summary.failed is None, summary.failed


def shape(state: str) -> str:
    """Host state without what differs by design between two builds: keys, digests."""
    state = re.sub(r"^[0-9a-f]{64}  ", "", state, flags=re.M)
    state = re.sub(r"_[0-9a-f]{12}\b", "_<digest>", state)
    # Docker's object IDs (secrets, networks) are new in every build.
    state = re.sub(r'"(SecretID|Target)":"[0-9a-z]{25}"', r'"\1":"<id>"', state)
    state = re.sub(
        r'"runbook.stack-digest":"[0-9a-f]+"', '"runbook.stack-digest":"<digest>"', state
    )
    return "\n".join(sorted(state.splitlines()))


@pytest.fixture(scope="module")
def built(lab, tmp_path_factory):
    """A host the runbook has built (from a reset)."""
    subprocess.run(["bash", str(ROOT / "tests/lab/reset.sh")], check=True, capture_output=True)
    tmp = tmp_path_factory.mktemp("faults")
    assert_clean(run(tmp))
    return tmp


LOGIN = (
    "export DOCKER_CONFIG=$(mktemp -d)\n"
    "docker login --username admin --password-stdin localhost:5000 >/dev/null "
    "< /var/lib/runbook-lab/client/registry-admin.password"
)


def keep_image() -> str:
    """Push an image under a name of its own and return it by digest.

    Notebook 08 pushes its test image again whenever it is missing, so pulling that image
    after a run proves nothing about data kept; nothing ever pushes this one again.
    """
    name = f"localhost:5000/keepsake-{secrets.token_hex(4)}:v1"
    out = sh(
        f"""
        set -e
        {LOGIN}
        docker tag hello-world {name}
        docker push {name} >/dev/null
        docker image inspect --format '{{{{join .RepoDigests "\\n"}}}}' {name}
        docker image rm {name} >/dev/null
        rm -rf "$DOCKER_CONFIG"
        """
    )
    (ref,) = [line for line in out.split() if line.startswith(name.split(":v1")[0] + "@")]
    return ref


def served(ref: str) -> bool:
    """The registry still serves this manifest, and its blobs, by digest."""
    out = sh(
        f"""
        set -e
        {LOGIN}
        docker image rm {ref} >/dev/null 2>&1 || true
        docker pull {ref} >/dev/null && echo pulled
        docker image rm {ref} >/dev/null
        rm -rf "$DOCKER_CONFIG"
        """
    )
    return "pulled" in out


def registry_container() -> str:
    return sh("docker ps -q --filter label=com.docker.swarm.service.name=manager_registry").strip()


def test_killed_registry_task_comes_back_with_its_images(built):
    kept = keep_image()
    before = registry_container()
    assert before
    sh(f"docker kill {before}")
    summary = run(built, only=["07"])
    assert_clean(summary)
    assert [n.changed for n in summary.notebooks] == [0]
    assert registry_container() not in ("", before)
    assert served(kept)


def test_restarted_engine_brings_the_registry_back_with_its_data(built):
    lab = ROOT / "tests/lab"
    kept = keep_image()
    pid = sh("cat /run/runbook-lab-dockerd.pid").strip()
    sh(f". {lab}/common.sh; lab_stop_pidfile /run/runbook-lab-dockerd.pid dockerd 90")
    sh(f"bash {lab}/engine.sh >/dev/null")
    # The engine did restart: another dockerd answers.
    assert sh("cat /run/runbook-lab-dockerd.pid").strip() not in ("", pid)
    summary = run(built, only=["07"])
    assert_clean(summary)
    assert summary.notebooks[0].changed == 0
    assert served(kept)


def test_dropped_connection_names_the_step_and_a_rerun_completes(built):
    def sessions() -> set[str]:
        r = subprocess.run(["pgrep", "-f", "^sshd: root@notty"], capture_output=True, text=True)
        return set(r.stdout.split())

    # Sessions of earlier runs may still be closing: only the run's own session is cut.
    earlier = sessions()

    def drop():
        # Wait until the notebook is pushing (its session exists long before: the run
        # connects while its kernel boots), then kill its SSH session on the host side.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pushing = subprocess.run(["pgrep", "-f", "docker push"], capture_output=True)
            new = sessions() - earlier
            if new and pushing.returncode == 0:
                subprocess.run(["kill", *new])
                return
            time.sleep(0.02)

    # A push and pull keep the notebook busy long enough to be cut in the middle.
    always = built / "always.yaml"
    always.write_text(PARAMS.read_text() + "verify_push: always\n")
    t = threading.Thread(target=drop)
    t.start()
    broken = run(built, always, only=["08"])
    t.join()
    assert broken.failed is not None
    # The record names the step that was cut, and why.
    assert "step 'Push'" in broken.failed.error, broken.failed.error
    assert "SSH connection was lost" in broken.failed.error, broken.failed.error
    assert [s["name"] for s in broken.failed.steps if s["status"] == "failed"] == ["Push"]
    assert_clean(run(built, always, only=["08"]))


@pytest.fixture(scope="module")
def reference_shape(lab, tmp_path_factory):
    """The host as one uninterrupted run from a reset leaves it."""
    subprocess.run(["bash", str(ROOT / "tests/lab/reset.sh")], check=True, capture_output=True)
    assert_clean(run(tmp_path_factory.mktemp("reference")))
    return shape(host_state())


@pytest.mark.parametrize("stop_after", ["01", "02", "03", "04", "05", "06", "07", "08"])
def test_a_run_stopped_after_any_notebook_converges(reference_shape, tmp_path, stop_after):
    subprocess.run(["bash", str(ROOT / "tests/lab/reset.sh")], check=True, capture_output=True)
    numbers = [p.name[:2] for p in runner.notebooks()]
    assert_clean(run(tmp_path, only=[n for n in numbers if n <= stop_after]))
    assert_clean(run(tmp_path))
    assert shape(host_state()) == reference_shape


def test_a_damaged_password_file_is_repaired_and_said(built):
    kept = keep_image()
    sh(r"printf '\377\376 not text\nno-colon\n' >> /home/docker/auth/htpasswd")
    summary = run(built, only=["06", "07"])
    assert_clean(summary)
    report = runner.read_report(Path(summary.folder) / "06-users.ipynb")
    (users,) = report["steps"]
    assert users["status"] == "changed" and "dropped 2 damaged line(s)" in users["reason"]
    assert "line 1" not in users["warnings"][0] and "not UTF-8" in users["warnings"][0]
    assert served(kept)


def test_trust_left_under_an_old_port_is_removed(built, tmp_path):
    import yaml

    values = yaml.safe_load(PARAMS.read_text())
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump({**values, "registry_port": 5002}))
    try:
        assert_clean(run(built, params=moved, only=["05", "07"]))
        assert sh("ls /etc/docker/certs.d").split() == ["127.0.0.1:5002", "localhost:5002"]
    finally:
        back = run(built, only=["05", "07"])
    assert_clean(back)
    assert sh("ls /etc/docker/certs.d").split() == ["127.0.0.1:5000", "localhost:5000"]


def test_a_run_stopped_after_a_new_certificate_leaves_clients_pulling(built, tmp_path):
    """05 replaces the certificate; 07 has not deployed it yet. Docker keeps trusting the
    old certificate beside the new one, so clients still pull from the registry that runs;
    once 07 has the new one answering, only the new one is trusted."""
    kept = keep_image()
    import yaml

    values = yaml.safe_load(PARAMS.read_text())
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump({**values, "registry_names": ["127.0.0.1", "127.0.0.2"]}))
    stopped = run(built, params=renamed, only=["05"])
    assert_clean(stopped)
    assert stopped.notebooks[0].changed >= 1  # a new certificate, for the new name
    assert served(kept)  # the old registry, trusted through the previous CA
    assert "previous-ca.crt" in sh("ls /etc/docker/certs.d/localhost:5000")

    finished = run(built, params=renamed, only=["05", "06", "07", "08"])
    assert_clean(finished)
    assert served(kept)
    assert sh("ls /etc/docker/certs.d/localhost:5000").split() == ["ca.crt"]

    back = run(built, only=["05", "07"])
    assert_clean(back)
    assert sh("ls /etc/docker/certs.d").split() == ["127.0.0.1:5000", "localhost:5000"]


def test_a_failed_update_rolls_back_and_clients_still_pull(built, tmp_path):
    """07 deploys an image that cannot start: the run fails naming the rollback, and Docker
    brings back the registry that was serving."""
    kept = keep_image()
    import yaml

    values = yaml.safe_load(PARAMS.read_text())
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**values, "registry_image": "registry:no-such-tag"}))
    failed = run(built, params=broken, only=["07"])
    assert failed.failed is not None and failed.failed.name == "07-registry"
    deadline = time.monotonic() + 90
    while not _pulls(kept) and time.monotonic() < deadline:
        time.sleep(1)
    assert _pulls(kept), "the registry did not come back after the failed update"
    assert "registry:2" in sh(
        "docker service inspect manager_registry --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}'"
    )
    assert_clean(run(built, only=["07"]))


def _pulls(kept: str) -> bool:
    try:
        return served(kept)
    except AssertionError:
        return False


@pytest.mark.parametrize("stop_after", ["04", "05", "06"])
def test_a_change_stopped_before_its_deploy_leaves_clients_pulling(built, tmp_path, stop_after):
    """A run that would change the certificate and the users stops after each notebook
    before 07: the registry that was serving still serves, over TLS Docker trusts."""
    kept = keep_image()
    import yaml

    values = yaml.safe_load(PARAMS.read_text())
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        yaml.safe_dump(
            {
                **values,
                "registry_names": ["127.0.0.1", "127.0.0.3"],
                "registry_users": {**values["registry_users"], "extra": "env:RB_EXTRA"},
            }
        )
    )
    os.environ["RB_EXTRA"] = "an-extra-password-123"
    numbers = [p.name[:2] for p in runner.notebooks()]
    try:
        assert_clean(run(built, params=changed, only=[n for n in numbers if n <= stop_after]))
        assert served(kept)
    finally:
        restored = tmp_path / "restored.yaml"
        restored.write_text(yaml.safe_dump({**values, "registry_remove_users": ["extra"]}))
        assert_clean(run(built, params=restored))
    assert served(kept)


def test_a_registry_scaled_down_by_hand_is_brought_back(built):
    kept = keep_image()
    sh("docker service scale --detach manager_registry=0 >/dev/null")  # by hand
    summary = run(built, only=["07"])
    assert_clean(summary)
    steps = runner.read_report(Path(summary.folder) / "07-registry.ipynb")["steps"]
    service = next(s for s in steps if s["name"] == "Registry service")
    assert service["status"] == "changed" and "scaled back to 1" in service["reason"]
    assert served(kept)
    assert [n.changed for n in run(built, only=["07"]).notebooks] == [0]
