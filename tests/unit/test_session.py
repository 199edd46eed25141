"""The run's hosts: who they are, how each is reached, one connection each, and work on
all of them at once with each host's own outcome."""

from __future__ import annotations

import threading
import time

from runbook_lib import params
from runbook_lib.session import Session, targets

BASE = {
    "host": "10.0.0.1",
    "registry_host": "10.0.0.1",
    "registry_users": {"admin": "env:X"},
    "ssh_user": "deploy",
    "ssh_port": 2200,
    "sudo_password": "env:SUDO",
}


class AtOnce:
    """Counts how many threads are inside it at once, and the most there ever were."""

    def __init__(self):
        self.inside = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def __exit__(self, *exc):
        with self._lock:
            self.inside -= 1


def test_one_host_is_the_first_manager():
    (t,) = targets(params.load(BASE))
    assert (t.address, t.role, t.first, t.ssh_user, t.ssh_port) == (
        "10.0.0.1",
        "manager",
        True,
        "deploy",
        2200,
    )
    assert t.name == "10.0.0.1:2200"


def test_nodes_take_what_they_leave_out_from_the_top_level():
    p = params.load(
        {
            **BASE,
            "nodes": [
                {"address": "10.0.0.2", "labels": {"b": "2", "a": "1"}},
                {"address": "10.0.0.3", "role": "manager", "ssh_user": "ops", "ssh_port": 22},
            ],
        }
    )
    first, two, three = targets(p)
    assert (two.role, two.first, two.ssh_user, two.ssh_port) == ("worker", False, "deploy", 2200)
    assert two.sudo_password.ref == "env:SUDO" and two.labels == (("a", "1"), ("b", "2"))
    assert (three.role, three.ssh_user, three.ssh_port, three.name) == (
        "manager",
        "ops",
        22,
        "10.0.0.3",
    )


def test_one_connection_per_host_shared_by_sessions_and_none_opened_before_use():
    p = params.load({**BASE, "nodes": [{"address": "10.0.0.2"}]})
    a, b = Session(p), Session(p)
    assert a.host() is b.host() and a.host() is not a.host(a.targets[1])
    assert a.host().changes == 0 and a.host()._client is None  # not connected


def test_each_runs_in_parallel_and_keeps_every_host_s_outcome_in_order():
    p = params.load({**BASE, "nodes": [{"address": f"10.0.0.{i}"} for i in (2, 3, 4)]})
    at_once = AtOnce()

    def work(t):
        with at_once:
            time.sleep(0.2)
        if t.address == "10.0.0.3":
            raise RuntimeError("unreachable")
        return t.address

    began = time.monotonic()
    out = Session(p).each(work)
    assert time.monotonic() - began < 0.6  # four hosts, not four times one host
    assert at_once.most == 4
    assert [t.address for t, _ in out] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert [v for _, v in out][:2] == ["10.0.0.1", "10.0.0.2"]
    assert isinstance(out[2][1], RuntimeError) and out[3][1] == "10.0.0.4"


def test_each_is_bounded():
    p = params.load({**BASE, "nodes": [{"address": f"10.0.0.{i}"} for i in range(2, 8)]})
    at_once = AtOnce()

    def work(t):
        with at_once:
            time.sleep(0.05)

    Session(p).each(work, parallel=3)
    assert at_once.most == 3
