"""Bad input against the real lab: every mistake is named, with its fix, and the host is
left exactly as it was."""

from __future__ import annotations

import pytest
import yaml

from runbook_lib import runner
from runbook_lib.errors import RunbookError
from tests.conftest import CLIENT, ROOT
from tests.integration.test_runbook import host_state

pytestmark = pytest.mark.lab

LAB = yaml.safe_load((ROOT / "parameters/lab-local.yaml").read_text())
DEPLOY = {"ssh_user": "deploy", "sudo_password": f"file:{CLIENT / 'deploy.password'}"}

# (case, overrides, what the message must name)
CASES = [
    ("unreachable port", {"ssh_port": 1}, "ssh_port"),
    ("unknown host key", {"known_hosts": "EMPTY"}, "trust_unknown_host_key"),
    ("wrong ssh user", {"ssh_user": "nobody-here"}, "ssh_user"),
    (
        "wrong ssh password",
        {"ssh_user": "deploy", "ssh_key_file": None, "ssh_password": "env:RB_WRONG"},
        "ssh_password",
    ),
    ("wrong sudo password", {**DEPLOY, "sudo_password": "env:RB_WRONG"}, "sudo_password"),
    ("missing sudo password", {"ssh_user": "deploy"}, "sudo_password"),
    ("missing key file", {"ssh_key_file": "/nonexistent/id_ed25519"}, "ssh_key_file"),
    ("registry port taken", {"registry_port": 2222}, "registry_port"),
    (
        "unresolvable registry name",
        {"registry_host": "no-such-host.invalid", "registry_names": []},
        "registry_host",
    ),
    ("bad host name", {"host": "bad host"}, "host"),
    ("port out of range", {"registry_port": 70000}, "registry_port"),
    ("ssh port zero", {"ssh_port": 0}, "ssh_port"),
    ("user with a colon", {"registry_users": {"ad:min": "env:RB_GOOD"}}, "registry_users"),
    ("empty user name", {"registry_users": {"": "env:RB_GOOD"}}, "registry_users"),
    ("short password", {"registry_users": {"admin": "env:RB_SHORT"}}, "registry_users"),
    ("empty password", {"registry_users": {"admin": "env:RB_EMPTY"}}, "registry_users"),
    (
        "password given as a value",
        {"registry_users": {"admin": "hunter2hunter2"}},
        "registry_users",
    ),
    ("unset secret variable", {"registry_users": {"admin": "env:RB_NOT_SET"}}, "registry_users"),
    ("zero certificate days", {"tls_days": 0}, "tls_days"),
    ("negative certificate days", {"tls_days": -1}, "tls_days"),
    ("unknown key type", {"tls_key_type": "dsa"}, "tls_key_type"),
    ("key size for another type", {"tls_key_size": 4096}, "tls_key_size"),
    ("unknown parameter", {"registry_prot": 5000}, "registry_prot"),
    ("wrong type", {"trust_unknown_host_key": "sometimes"}, "trust_unknown_host_key"),
    ("bcrypt cost too low", {"registry_bcrypt_cost": 2}, "registry_bcrypt_cost"),
    ("bad publish mode", {"registry_publish_mode": "mesh"}, "registry_publish_mode"),
    ("relative work dir", {"work_dir": "home/docker"}, "work_dir"),
    ("bad stack name", {"stack_name": "my stack"}, "stack_name"),
    ("bad advertise address", {"swarm_advertise_addr": "not an address!"}, "swarm_advertise_addr"),
    ("EL-only source on Debian", {"docker_source": "yum"}, "docker_source"),
    (
        "public key as the key file",
        {"ssh_key_file": str(CLIENT / "id_ed25519.pub")},
        "ssh_key_file",
    ),
    ("known_hosts is a folder", {"known_hosts": str(CLIENT)}, "known_hosts"),
    ("image that is an option", {"registry_image": "-v/:/host"}, "registry_image"),
    ("malformed verify image", {"verify_image": "--privileged"}, "verify_image"),
    ("stack name too long for Docker", {"stack_name": "s" * 60}, "stack_name"),
    ("work dir that resolves to /", {"work_dir": "/home/docker/../.."}, "work_dir"),
    ("work dir with a comma", {"work_dir": "/srv/a,b"}, "work_dir"),
    ("registry on a swarm port", {"registry_port": 2377}, "registry_port"),
    ("bad network to allow", {"allow_from": ["10.0.0.300"]}, "allow_from"),
    (
        "secret file others can read",
        {"registry_users": {"admin": f"file:{CLIENT / 'id_ed25519.pub'}"}},
        "registry_users",
    ),
    (
        "Portainer on the registry's port",
        {
            "portainer_enabled": True,
            "portainer_admin_password": "env:RB_GOOD",
            "portainer_port": 5000,
        },
        "portainer_port",
    ),
    (
        "short Portainer password",
        {"portainer_enabled": True, "portainer_admin_password": "env:RB_SHORT"},
        "portainer_admin_password",
    ),
]


@pytest.fixture(scope="module")
def state(lab):
    return host_state()


@pytest.mark.parametrize("case,over,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named_and_changes_nothing(state, tmp_path, monkeypatch, case, over, names):
    monkeypatch.setenv("RB_WRONG", "not-the-password-123")
    monkeypatch.setenv("RB_GOOD", "a-good-password-123")
    monkeypatch.setenv("RB_SHORT", "qz7k")
    monkeypatch.setenv("RB_EMPTY", "")
    monkeypatch.delenv("RB_NOT_SET", raising=False)
    values = {**LAB, "registry_users": {"admin": "env:RB_GOOD"}, **over}
    if values.get("known_hosts") == "EMPTY":
        (tmp_path / "known_hosts").write_text("")
        values["known_hosts"] = str(tmp_path / "known_hosts")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(values))
    try:
        summary = runner.run(path, out_root=tmp_path / "runs", log=lambda *_: None)
        assert summary.failed is not None, f"{case}: the run did not fail"
        message = summary.failed.error
        assert summary.failed.name == "01-preflight", message
    except RunbookError as exc:
        message = str(exc)
    assert names in message, message
    for secret in ("not-the-password-123", "a-good-password-123", "qz7k", "hunter2hunter2"):
        assert secret not in message
    assert host_state() == state, f"{case}: the host changed"
