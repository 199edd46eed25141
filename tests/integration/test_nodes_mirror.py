"""Notebook 19 on the lab's three nodes: a pull-through cache of the lab's "Docker Hub" (the
image mirror at 10.204.0.1:5001, tests/lab/fresh-host.sh) on node1, and every node's Docker
set to use it. Then the upstream is cut off, on every node, and a worker still pulls an
image the cache holds: from the cache.

Runs on the swarm test_nodes.py leaves built, or builds it first.
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import ExitStack, contextmanager

import pytest
import yaml

from runbook_lib import runner
from tests.conftest import lab_missing
from tests.integration.test_nodes import ADDRESSES, NODES, PARAMS, clean, on, steps

pytestmark = pytest.mark.nodes
UPSTREAM = "http://10.204.0.1:5001"
MIRROR = "https://10.203.0.11:5002"
quiet = {"log": lambda *_: None}


@contextmanager
def cut_off(node: str):
    """The lab's "Docker Hub" unreachable from one node (its network namespace)."""
    rule = ["OUTPUT", "-p", "tcp", "-d", "10.204.0.1", "--dport", "5001", "-j", "REJECT"]
    iptables = ["ip", "netns", "exec", f"runbook-{node}", "iptables"]
    subprocess.run([*iptables, "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run([*iptables, "-D", *rule], check=True)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    if os.geteuid() != 0:
        lab_missing("the lab's nodes need root: tests/lab/nodes.sh boots them in namespaces")
    r = subprocess.run(["bash", str(NODES), "up"], capture_output=True, text=True)
    assert r.returncode == 0, f"nodes.sh up:\n{r.stdout}\n{r.stderr}"
    out = tmp_path_factory.mktemp("mirror")
    params = out / "mirror.yaml"
    values = yaml.safe_load(PARAMS.read_text())
    values |= {"mirror_enabled": True, "mirror_upstream": UPSTREAM}
    params.write_text(yaml.safe_dump(values))
    first = clean(runner.run(params, out_root=out / "runs", **quiet))
    second = clean(runner.run(params, out_root=out / "runs", **quiet))
    return params, first, second


def test_every_node_uses_the_cache_and_it_fills(mirrored):
    _, first, _ = mirrored
    lines = steps(first, "19-mirror")
    uses = [(s["host"], s["status"]) for s in lines if s["name"] == "Docker hosts use the mirror"]
    assert [host for host, _ in uses] == list(ADDRESSES)
    for address in ADDRESSES:
        daemon = json.loads(on(address, "cat /etc/docker/daemon.json"))
        # First, and the lab's own mirror kept after it: merged, not overwritten.
        assert daemon["registry-mirrors"] == [MIRROR, UPSTREAM], address
        mirrors = on(address, "docker info --format '{{json .RegistryConfig.Mirrors}}'")
        assert json.loads(mirrors)[0].rstrip("/") == MIRROR, address
    (cached,) = [s for s in lines if s["name"] == "The mirror caches an image"]
    assert cached["status"] == "verified" and "library/hello-world:latest" in cached["reason"]


def test_a_second_run_changes_nothing(mirrored):
    _, _, second = mirrored
    assert {n.name: n.changed for n in second.notebooks} == {n.name: 0 for n in second.notebooks}


def test_with_the_upstream_cut_off_a_worker_pulls_from_the_cache(mirrored):
    on(ADDRESSES[2], "docker image rm -f hello-world >/dev/null 2>&1; true")
    with ExitStack() as stack:
        for node in ("node1", "node2", "node3"):
            stack.enter_context(cut_off(node))
        # The lab's mirror is really out of reach, so the pull below has only the cache.
        direct = on(
            ADDRESSES[2],
            "python3 -c \"import urllib.request; urllib.request.urlopen('"
            + UPSTREAM
            + "/v2/', timeout=3)\" 2>&1; echo rc=$?",
            check=False,
        )
        assert "rc=1" in direct, direct
        on(ADDRESSES[2], "docker pull hello-world >/dev/null")
    assert "hello-world" in on(ADDRESSES[2], "docker image ls --format '{{.Repository}}'")
