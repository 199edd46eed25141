"""Notebook 17 takes down the swarm the runbook built on the lab's three nodes, and a whole
run builds it again.

Self-sufficient: the nodes are booted when they are down and the whole runbook is run when
the swarm is not built (right after test_nodes.py it is, and is used as it is). Before the
teardown, notebook 04 adds its firewall rules (allow_from), node3 is made a manager (so
that the managers' way out is taken too) and a stand-in of Portainer's stack runs (its
services, its overlay network and its volume portainer_data, of the registry's image: no
Portainer image can be pulled in the lab).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import papermill
import pytest
import yaml

from runbook_lib import runner
from tests.conftest import ROOT, lab_missing
from tests.integration.test_nodes import (
    ADDRESSES,
    NODES,
    PARAMS,
    node_list,
    on,
    run,
    steps,
    swarm_state,
)

pytestmark = pytest.mark.nodes
HOST = ADDRESSES[0]
TRUST = f"/etc/docker/certs.d/{HOST}:5000"

# Portainer's stack as notebook 09 deploys it, in outline: an agent on every node, the server
# on a manager with the volume portainer_data, both on an attachable overlay network.
STAND_IN = """
version: "3.8"
services:
  agent:
    image: registry:2
    networks: [agent_network]
    deploy: {mode: global}
  portainer:
    image: registry:2
    volumes: ["portainer_data:/var/lib/registry"]
    networks: [agent_network]
    deploy: {placement: {constraints: ["node.role == manager", "node.hostname == node3"]}}
networks:
  agent_network: {driver: overlay, attachable: true}
volumes:
  portainer_data: {}
"""


def state() -> dict[str, str]:
    """What the teardown would change, on each node, as one comparable record."""
    script = (
        "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}';"
        " docker service ls --format '{{.Name}}' 2>/dev/null; docker secret ls --format"
        " '{{.Name}}' 2>/dev/null; ls -A /home/docker /etc/docker/certs.d 2>&1;"
        " iptables -S | grep RUNBOOK; docker volume ls -q; true"
    )
    return {a: on(a, script) for a in ADDRESSES}


def built_already() -> bool:
    first = on(HOST, "docker service ls --format '{{.Name}}'", check=False)
    states = [
        on(a, "docker info --format '{{.Swarm.LocalNodeState}}'", check=False) for a in ADDRESSES
    ]
    return "manager_registry" in first.split() and all(s.strip() == "active" for s in states)


def with_values(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump({**yaml.safe_load(PARAMS.read_text()), **values}))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        lab_missing("the lab's nodes need root: tests/lab/nodes.sh boots them in namespaces")
    if subprocess.run(["bash", str(NODES), "status"], capture_output=True).returncode != 0:
        r = subprocess.run(["bash", str(NODES), "up"], capture_output=True, text=True)
        assert r.returncode == 0, f"nodes.sh up:\n{r.stdout}\n{r.stderr}"
    out = tmp_path_factory.mktemp("teardown")
    allowed = with_values(out / "allowed.yaml", allow_from=["10.203.0.0/24"])
    files = {
        "allowed": allowed,
        "confirmed": with_values(
            out / "confirmed.yaml", allow_from=["10.203.0.0/24"], teardown_confirm=HOST
        ),
        "wrong": with_values(
            out / "wrong.yaml", allow_from=["10.203.0.0/24"], teardown_confirm=ADDRESSES[1]
        ),
    }
    if not built_already():
        assert run(out).failed is None
    assert run(out, allowed, only=["04"]).failed is None  # the firewall's rules
    on(HOST, "docker node promote node3 >/dev/null")
    on(HOST, f"docker stack deploy -c - portainer >/dev/null <<'EOF'\n{STAND_IN}\nEOF")
    # Until both services run all their tasks (REPLICAS "n/n", the agent one on each node).
    on(
        HOST,
        "for i in $(seq 120); do r=$(docker service ls --filter"
        " label=com.docker.stack.namespace=portainer --format '{{.Replicas}}');"
        ' [ $(echo "$r" | wc -l) = 2 ] && echo "$r" | awk -F/ \'$1 != $2 || $1 == 0'
        " {bad = 1} END {exit bad}' && exit 0; sleep 1; done; exit 1",
    )
    return out, files


def _refused(out: Path, params: Path) -> runner.RunSummary:
    before = state()
    refused = run(out, params, only=["17"])
    assert refused.failed is not None and refused.failed.name == "17-teardown"
    assert "parameter 'teardown_confirm'" in refused.failed.error
    assert f"(for example: teardown_confirm: {HOST})" in refused.failed.error
    assert state() == before  # nothing changed
    return refused


def test_teardown_is_refused_without_confirmation(lab):
    out, files = lab
    refused = _refused(out, files["allowed"])
    assert "is not set" in refused.failed.error


def test_teardown_is_refused_with_another_host_s_name(lab):
    out, files = lab
    refused = _refused(out, files["wrong"])
    assert f"is not the value of host ('{HOST}')" in refused.failed.error


def test_check_mode_shows_the_plan_and_changes_nothing(lab):
    out, files = lab
    before = state()
    plan = run(out, files["allowed"], only=["17"], check=True)
    assert plan.failed is None
    lines = {(s["name"], s["host"]): s for s in steps(plan, "17-teardown")}
    assert lines[("Confirmation", None)]["warnings"] == [
        f"a real run refuses until teardown_confirm: {HOST} is set (host, typed again)"
    ]
    for name in ("Portainer stack", "Registry stack", "Swarm", "Work directory"):
        assert lines[(name, None)]["status"] == "changed" and lines[(name, None)]["dry_run"]
    assert state() == before


@pytest.fixture(scope="module")
def torn(lab):
    """The teardown, as the notebook alone under papermill."""
    out, files = lab
    executed = out / "17-teardown.ipynb"
    began = time.monotonic()
    papermill.execute_notebook(
        str(ROOT / "notebooks/17-teardown.ipynb"),
        str(executed),
        parameters=yaml.safe_load(files["confirmed"].read_text()),
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
    )
    report = runner.read_report(executed)
    report["took"] = time.monotonic() - began
    return report


def test_teardown_takes_the_swarm_and_the_runbook_s_files_away(torn):
    assert torn["status"] == "changed", torn
    lines = {(s["name"], s["host"]): s for s in torn["steps"]}
    assert lines[("Workers leave", ADDRESSES[1])]["status"] == "changed"
    assert lines[("Workers leave", ADDRESSES[2])]["reason"].startswith("a manager")
    assert lines[("Managers leave", ADDRESSES[2])]["status"] == "changed"
    assert lines[("Swarm", None)]["status"] == "changed"
    assert "portainer_portainer" in lines[("Portainer stack", None)]["reason"]
    for a in ADDRESSES:
        assert on(a, "docker info --format '{{.Swarm.LocalNodeState}}'").strip() == "inactive"
        assert on(a, "ls -A /etc/docker/certs.d").split() == []  # no certs.d entry
        assert "RUNBOOK" not in on(a, "iptables -S")
        assert on(a, "docker ps -aq").split() == []  # the stacks' tasks are gone
        assert on(a, "docker version --format '{{.Server.Version}}'").strip()  # Docker stays
    assert on(HOST, "test -e /home/docker && echo there || echo gone").strip() == "gone"
    # The volumes are kept, where their services ran; the step says where.
    # (node1 also keeps Portainer's and the cache's when test_nodes.py and
    # test_nodes_mirror.py ran there before: Portainer's server ran on node1 then.)
    on_host = set(on(HOST, "docker volume ls -q").split())
    assert "manager_registry" in on_host
    assert on_host <= {"manager_registry", "portainer_portainer_data", "mirror_cache"}
    assert on(ADDRESSES[2], "docker volume ls -q").split() == ["portainer_portainer_data"]
    kept = lines[("Data volumes", HOST)]
    assert kept["status"] == "ok"
    assert kept["reason"].startswith(
        "kept (teardown_volumes is false): manager_registry "
        "(/var/lib/docker/volumes/manager_registry/_data)"
    )
    for a in ADDRESSES:  # the cache out of every host's registry-mirrors, if it was there
        assert ":5002" not in on(a, "cat /etc/docker/daemon.json")


def test_a_second_teardown_changes_nothing_and_leaves_another_swarm_alone(lab, torn):
    out, files = lab
    node2 = ADDRESSES[1]
    on(node2, f"docker swarm init --advertise-addr {node2} >/dev/null")  # not the runbook's
    theirs = swarm_state(node2)
    try:
        again = run(out, files["confirmed"], only=["17"])
        assert again.failed is None
        lines = steps(again, "17-teardown")
        assert {s["status"] for s in lines} <= {"ok", "verified", "skipped"}, lines
        found = {(s["name"], s["host"]): s for s in lines}
        assert found[("Swarm", None)]["reason"] == "no swarm: nothing to leave"
        assert found[("Work directory", None)]["reason"] == "already removed: /home/docker"
        firewall = found[("Firewall rules", HOST)]["reason"]
        assert firewall == "already removed: no RUNBOOK-ALLOW rules"
        assert found[("Workers leave", node2)]["reason"] == "in another swarm: left as it is"
        assert found[("Workers leave", node2)]["warnings"] == [
            f"{node2} is in another swarm (managers {node2}:2377): not touched"
        ]
        assert found[("Managers leave", node2)]["reason"].startswith("in another swarm")
        assert swarm_state(node2) == theirs
    finally:
        on(node2, "docker swarm leave --force >/dev/null")


def test_a_whole_run_builds_the_swarm_again_and_every_node_pulls(lab, torn):
    out, _ = lab
    try:
        again = run(out)
        assert again.failed is None, again.failed
        assert {n.name: n.status for n in again.notebooks}["01-preflight"] != "failed"
        (init,) = [s for s in steps(again, "04-swarm") if s["name"] == "Swarm"]
        assert init["status"] == "changed"
        pulls = [s for s in steps(again, "10-nodes") if s["name"] == "Pull on every host"]
        assert [(s["host"], s["status"]) for s in pulls] == [(a, "verified") for a in ADDRESSES]
        (everywhere,) = [
            s for s in steps(again, "10-nodes") if s["name"] == "A service on every node"
        ]
        assert everywhere["status"] == "verified" and "on 3 nodes" in everywhere["reason"]
        assert [n[:2] for n in node_list()] == [
            ("node1", "Ready"),
            ("node2", "Ready"),
            ("node3", "Ready"),
        ]
    finally:
        on(ADDRESSES[2], "docker volume rm portainer_portainer_data >/dev/null", check=False)
