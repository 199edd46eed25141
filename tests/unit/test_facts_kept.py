"""Facts kept per host across notebooks: read once, read again after a change."""

from __future__ import annotations

import threading

import pytest

from runbook_lib import facts
from runbook_lib.steps import Cmd, Plan, step
from tests.conftest import UserHost


class Counter:
    """A fact whose value says how many times it was read."""

    def __init__(self):
        self.reads = 0
        self.threads: set[str] = set()

    def __call__(self, host):
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        return self.reads


class Notebook:
    """What a step needs of a notebook: a host, the results, check mode, a recap."""

    def __init__(self, host, dry_run=False):
        self.host, self.dry_run, self.results = host, dry_run, []

    def recap(self):
        return None


@step("Touch")
def touch(rb, argv=("true",)):
    return Plan([Cmd(list(argv))], changed="ran", unchanged="nothing to do")


@step("Nothing")
def nothing(rb):
    return Plan([], changed="", unchanged="nothing to do")


def test_a_fact_is_read_once_until_the_host_changes():
    host, read = UserHost(), Counter()
    assert facts.shared(host, "n", read) == 1
    assert facts.shared(host, "n", read) == 1
    # A step that changes the host makes every fact read before it stale.
    touch(Notebook(host))
    assert facts.shared(host, "n", read) == 2
    assert facts.shared(host, "n", read, refresh=True) == 3
    # A dry run, or a plan with nothing to do, changes nothing.
    nothing(Notebook(host))
    touch(Notebook(host, dry_run=True), argv=["false"])
    assert facts.shared(host, "n", read) == 3


def test_facts_are_kept_per_host():
    a, b, read = UserHost(), UserHost(), Counter()
    assert facts.shared(a, "n", read) == 1
    assert facts.shared(b, "n", read) == 2


def test_a_prefetched_fact_is_read_in_the_background_and_used_once_ready():
    host, read = UserHost(), Counter()
    facts.prefetch(host, "n", read)
    assert facts.shared(host, "n", read) == 1
    assert read.reads == 1
    assert all(name.startswith("runbook-facts") for name in read.threads)


def test_a_prefetch_from_before_a_change_is_not_used():
    host, read = UserHost(), Counter()
    facts.prefetch(host, "n", read)
    touch(Notebook(host))
    assert facts.shared(host, "n", read) == 2


def test_a_failed_read_is_tried_again():
    host = UserHost()
    calls = []

    def flaky(h):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("lost")
        return "fine"

    facts.prefetch(host, "f", flaky)
    with pytest.raises(OSError):
        facts.shared(host, "f", flaky)
    assert facts.shared(host, "f", flaky) == "fine"


def test_facts_older_than_max_age_are_read_again(monkeypatch):
    host, read = UserHost(), Counter()
    assert facts.shared(host, "n", read) == 1
    monkeypatch.setattr(facts, "MAX_AGE", 0.0)
    assert facts.shared(host, "n", read) == 2
