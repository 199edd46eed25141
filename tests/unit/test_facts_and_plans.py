"""Facts parsers and step planners, on canned command output: no host needed."""

from __future__ import annotations

import pytest

from runbook_lib import facts, swarm
from runbook_lib.errors import ParameterError, RunbookError

DEBIAN = """== os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
ID=debian
VERSION_ID="12"
== arch
x86_64
== init
systemd
systemd-booted
== docker-server
24.0.7
== swarm
{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Nodes":0}
== compose
== addresses
eth0 192.0.2.10
docker0 172.17.0.1
== listen
0.0.0.0:22
[::]:5000
== disk
/ 1048576
/var 9999999
== end
"""


def test_parse_debian_host():
    f = facts.parse(DEBIAN)
    assert f.os.family == "debian" and f.os.major == 12
    assert f.init == "systemd" and f.docker_server == "24.0.7"
    assert f.swarm.state == "inactive"
    assert f.addresses == (("eth0", "192.0.2.10"), ("docker0", "172.17.0.1"))
    assert f.port_in_use(5000) and not f.port_in_use(500)
    assert f.free_kib["/var"] == 9999999


@pytest.mark.parametrize(
    "text,family,major",
    [
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"', "rhel", 9),
        ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"', "debian", 22),
        ('ID=centos\nID_LIKE="rhel fedora"\nVERSION_ID="7"', "rhel", 7),
        ("ID=alpine\nVERSION_ID=3.19.0", "other", 3),
    ],
)
def test_os_families(text, family, major):
    os_ = facts.parse_os_release(text.splitlines())
    assert (os_.family, os_.major) == (family, major)


def test_no_docker_leaves_sections_empty():
    f = facts.parse("== os-release\nID=debian\n== init\nbash\n== docker-server\n== swarm\n== end\n")
    assert f.docker_server == "" and f.swarm.state == "" and f.init == "bash"


def _with_swarm(state, manager=True, addresses=None):
    f = facts.parse(DEBIAN)
    return f.__class__(
        **{
            **f.__dict__,
            "swarm": facts.Swarm(state=state, is_manager=manager, nodes=1),
            "addresses": addresses if addresses is not None else f.addresses,
        }
    )


def test_swarm_plan_init_with_the_only_real_address():
    plan = swarm.plan_init(_with_swarm("inactive"), None)
    assert [c.argv for c in plan] == [["docker", "swarm", "init", "--advertise-addr", "192.0.2.10"]]


def test_swarm_active_manager_needs_nothing():
    assert swarm.plan_init(_with_swarm("active"), None) == []


def test_swarm_worker_is_refused():
    with pytest.raises(RunbookError, match="not a manager"):
        swarm.plan_init(_with_swarm("active", manager=False), None)


def test_swarm_several_addresses_need_the_parameter():
    f = _with_swarm("inactive", addresses=(("eth0", "192.0.2.10"), ("eth1", "198.51.100.2")))
    with pytest.raises(ParameterError, match="swarm_advertise_addr"):
        swarm.plan_init(f, None)
    assert swarm.plan_init(f, "198.51.100.2")[0].argv[-1] == "198.51.100.2"


def test_swarm_two_addresses_on_one_interface_need_the_parameter():
    text = DEBIAN.replace("eth0 192.0.2.10\n", "eth0 192.0.2.10/24\neth0 192.0.2.11/24\n")
    f = facts.parse(text)
    assert f.addresses[:2] == (("eth0", "192.0.2.10"), ("eth0", "192.0.2.11"))
    with pytest.raises(ParameterError, match=r"192.0.2.10 \(eth0\), 192.0.2.11 \(eth0\)"):
        swarm.plan_init(f, None)


def test_an_active_swarm_on_another_address_is_pointed_out():
    f = _with_swarm("active")
    f = f.__class__(
        **{**f.__dict__, "swarm": facts.Swarm("active", node_addr="192.0.2.10", is_manager=True)}
    )
    assert swarm.kept_address_note(f, None) == ""
    assert swarm.kept_address_note(f, "192.0.2.10") == ""
    assert "keeps its address" in swarm.kept_address_note(f, "198.51.100.2")
    # An interface name means its addresses.
    assert swarm.kept_address_note(f, "eth0") == ""
    assert "keeps its address" in swarm.kept_address_note(f, "docker0")


def test_swarm_with_only_loopback_lets_docker_choose():
    plan = swarm.plan_init(_with_swarm("inactive", addresses=()), None)
    assert plan[0].argv == ["docker", "swarm", "init"]


def test_swarm_in_error_state_is_explained():
    with pytest.raises(RunbookError, match="leave --force"):
        swarm.plan_init(_with_swarm("error"), None)
