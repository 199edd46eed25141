"""The whole runbook on the lab's fresh host with no upstream for images at all: its way to
the lab's "Docker Hub" (10.204.0.1:5001) is cut off in its network namespace before the run.
The registry's image comes from an archive on this machine (``registry_image_archive``,
loaded by notebook 07), and notebook 08 verifies with an image seeded from another archive
(``verify_archive``) instead of pulling hello-world. A second run changes nothing.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from runbook_lib import runner
from tests.conftest import CLIENT, ROOT, lab_missing

pytestmark = pytest.mark.fresh
FRESH = ROOT / "tests/lab/fresh-host.sh"
PARAMS = ROOT / "parameters/lab.yaml"
CUT = ["OUTPUT", "-p", "tcp", "-d", "10.204.0.1", "--dport", "5001", "-j", "REJECT"]
IPTABLES = ["ip", "netns", "exec", "runbook-fresh", "iptables"]
quiet = {"log": lambda *_: None}


def on_host(script: str, check: bool = True) -> str:
    ssh = ["ssh", "-F", "none", "-i", str(CLIENT / "id_ed25519"), "-o", "BatchMode=yes"]
    ssh += ["-o", f"UserKnownHostsFile={CLIENT / 'known_hosts'}", "root@10.204.0.2", script]
    r = subprocess.run(ssh, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"{script}\n{r.stderr}"
    return r.stdout + r.stderr


def statuses(summary: runner.RunSummary, notebook: str) -> dict[str, str]:
    (record,) = [n for n in summary.notebooks if n.name == notebook]
    return {s["name"]: s["status"] for s in record.steps}


@pytest.fixture(scope="module")
def airgapped(tmp_path_factory):
    if os.geteuid() != 0:
        lab_missing("the fresh host needs root: tests/lab/fresh-host.sh boots it in a namespace")
    for action in ("reset", "up"):
        r = subprocess.run(["bash", str(FRESH), action], capture_output=True, text=True)
        assert r.returncode == 0, f"fresh-host.sh {action}:\n{r.stdout}\n{r.stderr}"
    tmp = tmp_path_factory.mktemp("airgapped")
    # The images, as an operator brings them on a disk: the lab's, saved by its own script
    # (which starts this machine's engine first when it is not running).
    for script in ("engine.sh", "images.sh"):
        argv = ["bash", str(ROOT / "tests/lab" / script)] + (
            ["save", str(tmp)] if "images" in script else []
        )
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 0, f"{script}:\n{r.stdout}\n{r.stderr}"
    registry_archive, hello_archive = tmp / "registry-2.tar", tmp / "hello-world.tar"
    values = yaml.safe_load(PARAMS.read_text())
    values |= {
        "portainer_enabled": False,  # its images would need archives too
        "registry_image_archive": str(registry_archive),
        "verify_archive": str(hello_archive),
    }
    params = tmp / "airgapped.yaml"
    params.write_text(yaml.safe_dump(values))
    subprocess.run([*IPTABLES, "-I", *CUT], check=True)
    try:
        first = runner.run(params, out_root=tmp / "runs", **quiet)
        second = runner.run(params, out_root=tmp / "runs", **quiet)
        # Still cut off when the runs ended: the host could pull from nowhere.
        unreachable = on_host(
            'python3 -c "import urllib.request; urllib.request.urlopen('
            "'http://10.204.0.1:5001/v2/', timeout=3)\" 2>&1; echo rc=$?",
            check=False,
        )
        yield first, second, unreachable, params
    finally:
        subprocess.run([*IPTABLES, "-D", *CUT], check=True)


def test_a_host_without_an_upstream_gets_the_registry_and_verifies_with_a_seeded_image(
    airgapped,
):
    first, _, unreachable, _ = airgapped
    assert "rc=1" in unreachable, unreachable
    assert first.failed is None, first.failed
    assert statuses(first, "02-docker-engine")["Run a container"] == "verified"
    assert statuses(first, "07-registry")["Registry image from an archive"] == "changed"
    verify = statuses(first, "08-verify")
    assert verify["Seed from the archive"] == "changed"
    assert verify["Pull"] == "changed" and verify["Run the pulled image"] == "verified"
    assert "Hello from Docker!" in on_host("docker run --rm 10.204.0.2:5000/hello-world")


def test_a_second_run_without_an_upstream_changes_nothing(airgapped):
    _, second, _, _ = airgapped
    assert second.failed is None, second.failed
    assert {n.name: n.changed for n in second.notebooks} == {n.name: 0 for n in second.notebooks}
    assert statuses(second, "07-registry")["Registry image from an archive"] == "ok"


def test_an_archive_without_the_registry_image_is_refused_by_name(airgapped, tmp_path):
    values = yaml.safe_load(airgapped[3].read_text())
    values["registry_image_archive"] = values["verify_archive"]  # hello-world, not registry:2
    params = tmp_path / "wrong.yaml"
    params.write_text(yaml.safe_dump(values))
    refused = runner.run(params, out_root=tmp_path / "runs", only=["07"], **quiet)
    assert refused.failed is not None
    assert "parameter 'registry_image_archive'" in refused.failed.error
    assert "does not hold registry_image registry:2" in refused.failed.error
