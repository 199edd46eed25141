"""allow_from restricts the registry's and the swarm's ports to the networks it lists.

Clients are the lab's network namespace (tests/lab/fresh-host.sh) with two addresses: one
allowed, one not. The target is the local lab host, reached at the namespace's gateway."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.integration.test_faults import PARAMS, assert_clean, built, run, sh  # noqa: F401

pytestmark = pytest.mark.lab
NETNS, GATEWAY, ALLOWED, OTHER = "runbook-fresh", "10.204.0.1", "10.204.0.2", "10.204.0.3"

PROBE = """
import socket, ssl, sys
source, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.settimeout(3)
s.bind((source, 0))
try:
    s.connect((sys.argv[3], port))
    print("open")
except OSError as exc:
    print(type(exc).__name__)
"""


def reach(source: str, port: int) -> str:
    r = subprocess.run(
        ["ip", "netns", "exec", NETNS, "python3", "-c", PROBE, source, str(port), GATEWAY],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return r.stdout.strip()


@pytest.fixture
def second_address(built):  # noqa: F811 (pytest fixture)
    if subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True).returncode:
        pytest.fail("the lab's network namespace is missing: run `make lab`")
    sh(f"ip -n {NETNS} addr add {OTHER}/24 dev eth0 2>/dev/null || true")
    yield
    sh(f"ip -n {NETNS} addr del {OTHER}/24 dev eth0 2>/dev/null || true")


def params_with(tmp_path, allow):
    values = yaml.safe_load(PARAMS.read_text())
    path = tmp_path / "allow.yaml"
    path.write_text(yaml.safe_dump({**values, "allow_from": allow}))
    return path


def test_only_allowed_networks_reach_the_registry_and_the_swarm(second_address, tmp_path):
    assert reach(OTHER, 5000) == "open"  # before: anyone
    try:
        first = run(tmp_path, params=params_with(tmp_path, [ALLOWED]), only=["04"])
        assert_clean(first)
        assert first.notebooks[0].changed == 1
        for port in (5000, 2377):
            assert reach(ALLOWED, port) == "open", port
            assert reach(OTHER, port) == "ConnectionRefusedError", port
        # The host itself still may: the runbook's own checks and pushes go through.
        assert sh("curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:5000/v2/") == "401"
        again = run(tmp_path, params=params_with(tmp_path, [ALLOWED]), only=["04"])
        assert again.notebooks[0].changed == 0
    finally:
        lifted = run(tmp_path, params=params_with(tmp_path, []), only=["04"])
    assert_clean(lifted)
    assert "RUNBOOK-ALLOW" not in sh("iptables -S")
    assert reach(OTHER, 5000) == "open"


def test_a_bad_network_is_refused_before_anything_changes(tmp_path):
    from runbook_lib.errors import ParameterError

    values = yaml.safe_load(PARAMS.read_text())
    values.pop("ssh_key_file")  # root's (the lab's): only allow_from is to be refused here
    with pytest.raises(ParameterError, match="allow_from"):
        from runbook_lib import params

        params.load({**values, "allow_from": ["10.0.0.300"]})
