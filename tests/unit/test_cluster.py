"""What the runbook reads of a swarm, parsed from what Docker 20.10 printed on the lab's
three nodes (tests/fixtures/docker/)."""

from __future__ import annotations

from pathlib import Path

from runbook_lib import cluster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/docker"


def test_a_worker_s_view_of_its_swarm():
    s = cluster.parse_swarm((FIXTURES / "swarm-worker.json").read_text())
    assert s.state == "active" and not s.is_manager
    assert len(s.node_id) == 25 and s.managers == ("10.203.0.11:2377",)


def test_no_engine_or_no_swarm_reads_as_no_state():
    assert cluster.parse_swarm("") == cluster.NodeSwarm("")
    assert cluster.parse_swarm('{"LocalNodeState": "inactive", "NodeID": ""}').state == "inactive"


def test_the_first_manager_s_node_list():
    members = cluster.parse_members((FIXTURES / "node-inspect-3.json").read_text())
    assert sorted((m.hostname, m.role, m.state, m.availability) for m in members.values()) == [
        ("node1", "manager", "ready", "active"),
        ("node2", "worker", "ready", "active"),
        ("node3", "worker", "ready", "active"),
    ]
    by_host = {m.hostname: m for m in members.values()}
    assert by_host["node2"].addr == "10.203.0.12" and by_host["node2"].labels == {}
    assert all(members[k].id == k for k in members)


def test_no_nodes_listed():
    assert cluster.parse_members("") == {} and cluster.parse_members("[]") == {}
