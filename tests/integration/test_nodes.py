"""A swarm of three hosts, built by the whole runbook from fresh lab nodes.

The lab's nodes (tests/lab/nodes.sh) start without Docker. One run installs Docker on all
three at once, makes node1 the first manager with the registry, joins node2 and node3 as
workers, and checks that every node pulls from the registry and that a global job of the
registry's image, created with --with-registry-auth, runs on all three. A second run
changes nothing. A worker taken out comes back on the next run. A node in another swarm, a
blocked port and an unreachable node are each refused clearly, the nodes left as they were.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from runbook_lib import runner
from runbook_lib.hosts import port_open
from tests.conftest import CLIENT, ROOT, lab_missing

pytestmark = pytest.mark.nodes
NODES = ROOT / "tests/lab/nodes.sh"
PARAMS = ROOT / "parameters/lab-nodes.yaml"
ADDRESSES = ("10.203.0.11", "10.203.0.12", "10.203.0.13")
quiet = {"log": lambda *_: None}


def on(address: str, script: str, check: bool = True) -> str:
    ssh = ["ssh", "-F", "none", "-i", str(CLIENT / "id_ed25519"), "-o", "BatchMode=yes"]
    ssh += ["-o", f"UserKnownHostsFile={CLIENT / 'known_hosts'}", f"root@{address}"]
    r = subprocess.run([*ssh, script], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"{address}: {script}\n{r.stderr}"
    return r.stdout


def swarm_state(address: str) -> str:
    return on(address, "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'").strip()


def node_list() -> list[tuple[str, str, str]]:
    """(hostname, status, role) of each node, as the first manager lists them."""
    out = on(ADDRESSES[0], "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'")
    return sorted(tuple((line.split() + [""])[:3]) for line in out.splitlines())


def run(out: Path, params: Path = PARAMS, **kwargs) -> runner.RunSummary:
    return runner.run(params, out_root=out / "runs", **quiet, **kwargs)


def clean(summary: runner.RunSummary) -> runner.RunSummary:
    assert summary.failed is None, summary.failed
    return summary


def steps(summary: runner.RunSummary, notebook: str) -> list[dict]:
    return next(n.steps for n in summary.notebooks if n.name == notebook)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if os.geteuid() != 0:
        lab_missing("the lab's nodes need root: tests/lab/nodes.sh boots them in namespaces")
    for action in ("reset", "up"):
        r = subprocess.run(["bash", str(NODES), action], capture_output=True, text=True)
        assert r.returncode == 0, f"nodes.sh {action}:\n{r.stdout}\n{r.stderr}"
    assert all(port_open(a, 22, 2.0) for a in ADDRESSES)
    out = tmp_path_factory.mktemp("nodes")
    first = run(out)
    second = run(out)
    return out, first, second


def test_three_fresh_hosts_become_a_swarm_whose_nodes_all_pull(built):
    _, first, _ = built
    clean(first)
    installs = [s for s in steps(first, "02-docker-engine") if s["name"] == "Docker packages"]
    assert [(s["host"], s["status"]) for s in installs] == [(a, "changed") for a in ADDRESSES]
    joins = {
        s["host"]: s["status"] for s in steps(first, "10-nodes") if s["name"] == "Join the swarm"
    }
    assert joins == {ADDRESSES[0]: "ok", ADDRESSES[1]: "changed", ADDRESSES[2]: "changed"}
    assert node_list() == [
        ("node1", "Ready", "Leader"),
        ("node2", "Ready", ""),
        ("node3", "Ready", ""),
    ]
    labels = {
        s["host"]: s["status"] for s in steps(first, "10-nodes") if s["name"] == "Node labels"
    }
    assert labels == {ADDRESSES[0]: "ok", ADDRESSES[1]: "changed", ADDRESSES[2]: "ok"}
    assert on(
        ADDRESSES[0], "docker node inspect node2 --format '{{json .Spec.Labels}}'"
    ).strip() == ('{"lab":"node2"}')
    (everywhere,) = [s for s in steps(first, "10-nodes") if s["name"] == "A service on every node"]
    assert everywhere["status"] == "verified" and "on 3 nodes" in everywhere["reason"]
    pulls = [s for s in steps(first, "10-nodes") if s["name"] == "Pull on every host"]
    assert [(s["host"], s["status"]) for s in pulls] == [(a, "verified") for a in ADDRESSES]


def test_a_second_run_changes_nothing(built):
    _, _, second = built
    clean(second)
    assert {n.name: n.changed for n in second.notebooks} == {n.name: 0 for n in second.notebooks}
    # Portainer's agent, deployed by 09 before 10 joined the workers, runs on all three.
    (answers,) = [s for s in steps(second, "09-portainer") if s["name"] == "Portainer answers"]
    assert "an agent on each of the 3 nodes" in answers["reason"]


def test_a_worker_taken_out_comes_back(built):
    out, _, _ = built
    node3 = swarm_state(ADDRESSES[2]).split()[1]
    on(ADDRESSES[2], "docker swarm leave")
    forget(node3)
    assert [n[0] for n in node_list()] == ["node1", "node2"]
    again = clean(run(out, only=["01", "10"]))
    joins = {
        s["host"]: s["status"] for s in steps(again, "10-nodes") if s["name"] == "Join the swarm"
    }
    assert joins[ADDRESSES[2]] == "changed" and joins[ADDRESSES[1]] == "ok"
    assert [n[:2] for n in node_list()] == [
        ("node1", "Ready"),
        ("node2", "Ready"),
        ("node3", "Ready"),
    ]


def forget(node: str, *flags: str) -> None:
    """``docker node rm`` on the first manager, once it sees the node down (a minute at most)."""
    on(
        ADDRESSES[0],
        f"for i in $(seq 300); do docker node rm {' '.join(flags)} {node} >/dev/null 2>&1 && exit 0;"
        " sleep 0.2; done; exit 1",
    )


def _leave(address: str) -> None:
    """Take a worker out of the swarm, on both sides."""
    node = swarm_state(address).split()[1]
    on(address, "docker swarm leave --force")
    forget(node, "--force")


def test_a_node_in_another_swarm_is_refused_before_anything_changes(built):
    out, _, _ = built
    _leave(ADDRESSES[2])
    on(ADDRESSES[2], f"docker swarm init --advertise-addr {ADDRESSES[2]} >/dev/null")
    theirs = swarm_state(ADDRESSES[2])
    try:
        refused = run(out)
        assert refused.failed is not None and refused.failed.name == "01-preflight"
        assert "10.203.0.13 is active in another swarm" in refused.failed.error
        assert "docker swarm leave" in refused.failed.error
        assert swarm_state(ADDRESSES[2]) == theirs  # left as it was
    finally:
        on(ADDRESSES[2], "docker swarm leave --force >/dev/null")
    clean(run(out, only=["01", "10"]))
    assert len(node_list()) == 3


@contextmanager
def node3_firewall(rule: str):
    """An iptables rule in node3's namespace while the block runs (``-I ...``)."""
    iptables = ["ip", "netns", "exec", "runbook-node3", "iptables"]
    subprocess.run([*iptables, "-I", *rule.split()], check=True)
    try:
        yield
    finally:
        subprocess.run([*iptables, "-D", *rule.split()], check=True)


def test_a_blocked_port_names_the_port_and_both_hosts(built):
    out, _, _ = built
    _leave(ADDRESSES[2])
    with node3_firewall("OUTPUT -p tcp -d 10.203.0.11 --dport 2377 -j REJECT"):
        refused = run(out, only=["10"])
        assert refused.failed is not None
        error = refused.failed.error
        assert "10.203.0.13 cannot reach the first manager 10.203.0.11 on 2377/tcp" in error, error
        assert swarm_state(ADDRESSES[2]).split()[0] == "inactive"  # not half-joined
    clean(run(out, only=["10"]))
    assert len(node_list()) == 3


def test_an_unreachable_node_is_refused_in_preflight(built, tmp_path):
    out, _, _ = built
    values = yaml.safe_load(PARAMS.read_text())
    values["nodes"] = [*values["nodes"], {"address": "10.203.0.99"}]  # nothing there
    values["ssh_timeout"] = 3
    params = tmp_path / "unreachable.yaml"
    params.write_text(yaml.safe_dump(values))
    before = node_list()
    refused = run(out, params)
    assert refused.failed is not None and refused.failed.name == "01-preflight"
    assert "10.203.0.99" in refused.failed.error and "ssh_port" in refused.failed.error
    assert [n.status for n in refused.notebooks[1:]] == ["skipped"] * (len(refused.notebooks) - 1)
    assert node_list() == before


def test_notebook_11_takes_a_node_out_and_a_later_run_brings_it_back(built, tmp_path):
    out, _, _ = built
    values = yaml.safe_load(PARAMS.read_text())
    without = tmp_path / "without.yaml"
    without.write_text(
        yaml.safe_dump({**values, "nodes": values["nodes"][:1], "remove_nodes": [ADDRESSES[2]]})
    )
    removed = clean(run(out, without, only=["11"]))
    lines = {s["name"]: s for s in steps(removed, "11-remove-nodes")}
    assert lines["Drain"]["status"] == "changed" and lines["Drain"]["warnings"]
    assert lines["Leave"]["status"] == "changed"
    assert lines["Remove from the node list"]["status"] == "changed"
    assert [n[0] for n in node_list()] == ["node1", "node2"]
    assert swarm_state(ADDRESSES[2]).split()[0] == "inactive"
    again = clean(run(out, without, only=["11"]))
    assert [n.changed for n in again.notebooks] == [0]
    back = clean(run(out, only=["01", "10"]))
    assert len(node_list()) == 3 and back.failed is None


def test_a_blocked_udp_port_names_the_port_and_both_hosts(built):
    out, _, _ = built
    _leave(ADDRESSES[2])
    with node3_firewall("INPUT -p udp --dport 4789 -j DROP"):
        refused = run(out, only=["10"])
        assert refused.failed is not None
        error = refused.failed.error
        assert "10.203.0.11 to 10.203.0.13 on 4789/udp" in error, error
        assert "10.203.0.12 to 10.203.0.13 on 4789/udp" in error, error
        assert "7946/udp" not in error.split("The swarm needs")[0], error
        assert swarm_state(ADDRESSES[2]).split()[0] == "inactive"
    again = clean(run(out, only=["10"]))
    (udp,) = [s for s in steps(again, "10-nodes") if s["name"] == "Swarm ports (udp)"]
    assert udp["status"] == "verified" and "(4 checks)" in udp["reason"], udp
    assert len(node_list()) == 3
