"""A local user who can change the work directory must not be able to turn it against root.

The tutorial's work directory, /home/docker, is a user's home. Each test hands it to an
unprivileged user, who then plants what root would trust: a password file with their own
user, their own certificate and key, a symbolic link to a folder of theirs, their own stack.
A root run must refuse, naming ``work_dir``, and the registry must still serve only what the
parameters say.
"""

from __future__ import annotations

import shlex
import subprocess

import bcrypt
import pytest

from runbook_lib import runner
from tests.integration.test_faults import assert_clean, built, run, sh  # noqa: F401 (fixture)

pytestmark = pytest.mark.lab
INTRUDER = "rb-intruder"
WORK = "/home/docker"
EVIL_PASSWORD = "planted-password-123"


@pytest.fixture(scope="module")
def intruder():
    sh(f"id {INTRUDER} >/dev/null 2>&1 || useradd --no-create-home --shell /bin/sh {INTRUDER}")
    return INTRUDER


@pytest.fixture
def handed_over(built, intruder):  # noqa: F811 (pytest fixture)
    """The work directory, owned by the unprivileged user; given back to root afterwards."""
    sh(f"chown {INTRUDER} {WORK}")
    yield
    sh(
        f"""
        cd {WORK}
        for d in auth certs docker-compose.yml; do
          if [ -e "$d.orig" ] || [ -L "$d.orig" ]; then rm -rf -- "$d"; mv -- "$d.orig" "$d"; fi
        done
        chown root:root {WORK}
        rm -rf /tmp/rb-intruder-target
        """
    )


def as_intruder(script: str) -> None:
    r = subprocess.run(
        ["runuser", "-u", INTRUDER, "--", "sh", "-ec", script], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def refused(summary) -> str:
    bad = summary.failed
    assert bad is not None, "the run went through"
    assert "work_dir" in bad.error and INTRUDER in bad.error, bad.error
    return bad.error


def registry_status(user: str, password: str) -> str:
    return sh(
        "curl -s -o /dev/null -w '%{http_code}' --cacert /etc/docker/certs.d/localhost:5000/ca.crt "
        f"-u {shlex.quote(user + ':' + password)} https://localhost:5000/v2/_catalog"
    )


def admin_password() -> str:
    return open("/var/lib/runbook-lab/client/registry-admin.password").read().strip()


def test_a_planted_user_is_refused(handed_over, tmp_path):
    hashed = bcrypt.hashpw(EVIL_PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    line = shlex.quote(f"evil:{hashed}")
    as_intruder(f"cd {WORK} && mv auth auth.orig && mkdir auth && echo {line} > auth/htpasswd")
    refused(run(tmp_path, only=["05", "06", "07"]))
    assert registry_status("evil", EVIL_PASSWORD) == "401"
    assert registry_status("admin", admin_password()) == "200"


def test_a_planted_certificate_is_refused(handed_over, tmp_path):
    trust = "/etc/docker/certs.d/localhost:5000/ca.crt"
    before = sh(f"sha256sum {trust}")
    as_intruder(
        f"""cd {WORK} && mv certs certs.orig && mkdir certs && cd certs
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
          -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
          -keyout localhost.key -out localhost.crt 2>/dev/null
        cp localhost.crt ca.crt"""
    )
    refused(run(tmp_path, only=["05", "06", "07"]))
    assert sh(f"sha256sum {trust}") == before  # Docker's trust is untouched
    assert registry_status("admin", admin_password()) == "200"


def test_a_symbolic_link_is_refused_and_its_target_left_alone(handed_over, tmp_path):
    as_intruder(
        f"mkdir -m 755 /tmp/rb-intruder-target && cd {WORK} && mv certs certs.orig "
        "&& ln -s /tmp/rb-intruder-target certs"
    )
    refused(run(tmp_path, only=["05"]))
    assert sh("stat -c %a /tmp/rb-intruder-target").strip() == "755"
    assert sh("ls -A /tmp/rb-intruder-target") == ""


def test_a_planted_stack_is_refused(handed_over, tmp_path):
    as_intruder(
        f"cd {WORK} && mv docker-compose.yml docker-compose.yml.orig && "
        "printf 'services:\\n  registry:\\n    image: evil\\n    volumes: [\"/:/host\"]\\n'"
        " > docker-compose.yml"
    )
    refused(run(tmp_path, only=["07"]))
    spec = sh("docker service inspect manager_registry --format '{{json .Spec}}'")
    assert "evil" not in spec and "/host" not in spec


def test_root_deploys_what_it_rendered_not_the_file(built, tmp_path):  # noqa: F811
    """With the folder root's own, a stack file changed on disk is shown as a diff and put
    back; what runs is what the parameters say."""
    sh(f"sed -i 's/registry:2/evil:latest/' {WORK}/docker-compose.yml")
    summary = run(tmp_path, only=["07"])
    assert_clean(summary)
    steps = runner.read_report(
        tmp_path / "runs" / summary.folder.split("/")[-1] / "07-registry.ipynb"
    )["steps"]
    stack = next(s for s in steps if s["name"] == "Stack file")
    assert stack["status"] == "changed"
    (diff,) = stack["diffs"]
    assert "-    image: evil:latest" in diff["text"] and "+    image: registry:2" in diff["text"]
    service = next(s for s in steps if s["name"] == "Registry service")
    # The running service never saw the edit: nothing to deploy.
    assert not any("stack deploy" in a for a in service["actions"]), service
    assert "evil" not in sh("docker service inspect manager_registry --format '{{json .Spec}}'")


def test_a_kept_key_is_made_root_only_again(built, tmp_path):  # noqa: F811
    key = f"{WORK}/certs/localhost.key"
    sh(f"chmod 644 {key} && chgrp nogroup {key}")  # readable by all, not root's group
    summary = run(tmp_path, only=["05"])
    assert_clean(summary)
    assert sh(f"stat -c '%a %U:%G' {key}").split() == ["600", "root:root"]
    again = run(tmp_path, only=["05"])
    assert [n.changed for n in again.notebooks] == [0]
