"""A step on each host of the swarm: every host's body runs at once, each gets its own
result line, and one host's failure fails the step after the others finished, naming it."""

from __future__ import annotations

import threading
import time

import pytest

from runbook_lib import params
from runbook_lib.context import Runbook
from runbook_lib.steps import Found, HostResults, StepFailed, step
from tests.conftest import UserHost

BASE = {"host": "10.0.0.1", "registry_host": "10.0.0.1", "registry_users": {"admin": "env:X"}}


def notebook(*nodes: str) -> Runbook:
    p = params.load({**BASE, "nodes": [{"address": a} for a in nodes]})
    rb = Runbook(p, "02-test", host=UserHost())
    rb.recap = lambda: setattr(rb, "recapped", True)
    return rb


def test_one_host_is_an_ordinary_step():
    @step("Look", each_host=True)
    def look(rb):
        return Found(f"seen on {rb.target.address}")

    rb = notebook()
    result = look(rb)
    assert result.status == "ok" and result.host is None
    assert [r.title for r in rb.results] == ["Look"]


def test_every_host_at_once_in_the_hosts_order():
    inside, most, lock = [0], [0], threading.Lock()

    @step("Look", each_host=True)
    def look(rb):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.1 if rb.target.first else 0.2)
        with lock:
            inside[0] -= 1
        return Found(f"seen on {rb.target.address}")

    rb = notebook("10.0.0.2", "10.0.0.3")
    results = look(rb)
    assert isinstance(results, HostResults) and most[0] == 3
    assert [r.title for r in rb.results] == [
        "Look on 10.0.0.1",
        "Look on 10.0.0.2",
        "Look on 10.0.0.3",
    ]
    assert [r.reason for r in results] == [f"seen on 10.0.0.{i}" for i in (1, 2, 3)]
    # The first host's view is this notebook's own host; the others have their own.
    assert rb.on(rb.session.first).host is rb.host
    assert rb.on(rb.session.targets[1]).host is not rb.host


def test_a_failure_on_one_host_waits_for_the_others_and_names_the_host():
    finished = []

    @step("Install", each_host=True)
    def install(rb):
        if rb.target.address == "10.0.0.2":
            raise OSError("apt-get failed: no space left on device")
        time.sleep(0.2)
        finished.append(rb.target.address)
        return Found("installed")

    rb = notebook("10.0.0.2", "10.0.0.3")
    with pytest.raises(StepFailed) as e:
        install(rb)
    assert "failed on 1 of 3 hosts: 10.0.0.2: apt-get failed" in str(e.value)
    assert sorted(finished) == ["10.0.0.1", "10.0.0.3"]
    assert [(r.host, r.status) for r in rb.results] == [
        ("10.0.0.1", "ok"),
        ("10.0.0.2", "failed"),
        ("10.0.0.3", "ok"),
    ]
    assert getattr(rb, "recapped", False)  # the notebook's recap, shown once


def test_each_host_keeps_its_own_cache_and_the_first_shares_the_notebook_s():
    @step("Remember", each_host=True)
    def remember(rb):
        rb.cache.setdefault("seen", rb.target.address)
        return Found(rb.cache["seen"])

    rb = notebook("10.0.0.2")
    rb.cache["seen"] = "read by an earlier step"
    assert [r.reason for r in remember(rb)] == ["read by an earlier step", "10.0.0.2"]
