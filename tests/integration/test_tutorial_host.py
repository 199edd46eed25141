"""A host set up by hand with the tutorial's own commands is taken over by the runbook.

``benchmarks/floor.sh`` is the tutorial's recipe: a self-signed certificate and no
``ca.crt``, an htpasswd file, the registry reading both through bind mounts, the same stack
and volume names. The runbook keeps that certificate (it is valid for the registry's
names), makes it the ``ca.crt`` clients trust, moves the registry onto swarm secrets, and
the images pushed before are still there.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from runbook_lib import runner
from tests.conftest import CLIENT, LAB_ADDRESS, LAB_PORT, ROOT
from tests.integration.test_faults import assert_clean, run, served, sh

pytestmark = pytest.mark.lab
CERT = "/home/docker/certs/localhost.crt"


def tutorial_setup() -> None:
    script = f"PW={secrets.token_hex(12)}\n" + (ROOT / "benchmarks/floor.sh").read_text()
    ssh = ["ssh", "-F", "none", "-i", str(CLIENT / "id_ed25519"), "-o", "BatchMode=yes"]
    ssh += ["-o", f"UserKnownHostsFile={CLIENT / 'known_hosts'}", "-p", str(LAB_PORT)]
    r = subprocess.run(
        [*ssh, f"root@{LAB_ADDRESS}", "bash", "-s"], input=script, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def fingerprint(path: str) -> str:
    return sh(f"openssl x509 -in {path} -noout -fingerprint -sha256")


def test_a_tutorial_built_registry_is_taken_over(lab, tmp_path):
    subprocess.run(["bash", str(ROOT / "tests/lab/reset.sh")], check=True, capture_output=True)
    tutorial_setup()
    theirs = fingerprint(CERT)
    assert sh("test -e /home/docker/certs/ca.crt || echo none").strip() == "none"
    # What the tutorial's setup pushed, by digest. The run stops before 08, which would
    # push its test image again if it were lost.
    digests = sh(
        "docker image inspect --format '{{join .RepoDigests \"\\n\"}}' localhost:5000/hello-world"
    ).split()
    (pushed,) = [d for d in digests if d.startswith("localhost:5000/hello-world@")]

    numbers = [p.name[:2] for p in runner.notebooks()]
    summary = run(tmp_path, only=[n for n in numbers if n < "08"])
    assert_clean(summary)
    tls = next(n for n in summary.notebooks if n.name == "05-tls")
    assert tls.changed >= 1
    # The tutorial's certificate is kept, and is what clients now trust.
    assert fingerprint(CERT) == theirs
    assert fingerprint("/home/docker/certs/ca.crt") == theirs
    assert fingerprint("/etc/docker/certs.d/localhost:5000/ca.crt") == theirs
    # What was pushed with the tutorial's setup is still served, now behind our users.
    assert served(pushed)
    assert_clean(run(tmp_path))

    again = run(tmp_path)
    assert_clean(again)
    assert [n.changed for n in again.notebooks] == [0] * len(again.notebooks)
