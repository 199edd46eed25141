"""The step decorator: what a body returns becomes a result; the decorator alone applies
plans, honours check mode, skips, counts changes, times, names the step in errors and
records. Against this machine (real commands, as the user running the tests), without the lab."""

from __future__ import annotations

import pytest

from runbook_lib import swarm
from runbook_lib.errors import CommandFailed, RunbookError
from runbook_lib.facts import HostFacts, OsRelease, Swarm
from runbook_lib.steps import (
    Cmd,
    Done,
    Found,
    Plan,
    Put,
    Skip,
    StepFailed,
    StepResult,
    Verified,
    report,
    step,
)
from tests.conftest import UserHost


class Notebook:
    """What a step needs of a notebook: a host, its results, check mode, a recap."""

    def __init__(self, host=None, dry_run=False, facts=None):
        self.host = host or UserHost()
        self.dry_run = dry_run
        self.results: list[StepResult] = []
        self.recaps = 0
        self._facts = facts
        self.p = None

    def recap(self):
        self.recaps += 1

    def facts(self, refresh=False):
        return self._facts


def outcome_step(outcome, **kwargs):
    @step("Thing", **kwargs)
    def thing(rb):
        return outcome

    return thing


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Found("already there"), "ok"),
        (Verified("answers"), "verified"),
        (Skip("not wanted"), "skipped"),
        (Done("pushed"), "changed"),
        (Plan([], changed="made", unchanged="already there"), "ok"),
    ],
)
def test_each_outcome_has_its_status(outcome, status):
    rb = Notebook()
    result = outcome_step(outcome)(rb)
    assert (result.name, result.status) == ("Thing", status)
    assert rb.results == [result]


def test_a_plan_runs_and_counts_as_a_change(tmp_path):
    rb = Notebook()
    target = tmp_path / "made"
    before = rb.host.changes
    result = outcome_step(Plan([Cmd(["touch", str(target)])], changed="made", unchanged=""))(rb)
    assert target.exists()
    assert (result.status, result.reason, result.label) == ("changed", "made", "changed")
    assert result.actions == [f"touch {target}"]
    assert rb.host.changes > before  # facts read before are stale


def test_check_mode_shows_the_plan_and_runs_nothing(tmp_path):
    rb = Notebook(dry_run=True)
    target = tmp_path / "made"
    before = rb.host.changes
    result = outcome_step(Plan([Cmd(["touch", str(target)])], changed="made", unchanged=""))(rb)
    assert not target.exists()
    assert (result.status, result.label, result.dry_run) == ("changed", "would change", True)
    assert rb.host.changes == before


def test_after_runs_once_applied_and_never_in_check_mode():
    seen = []

    def after(result):
        seen.append(1)
        result.details["version"] = "1.0"

    plan = Plan([Cmd(["true"])], changed="installed", after=after)
    assert outcome_step(plan)(Notebook()).details == {"version": "1.0"}
    assert outcome_step(plan)(Notebook(dry_run=True)).details == {}
    assert seen == [1]


def test_skip_is_decided_before_the_body_looks():
    def body_must_not_run(rb):
        raise AssertionError("the body ran")

    wrapped = step("Thing", skip=lambda rb: "not wanted here")(body_must_not_run)
    result = wrapped(Notebook())
    assert (result.status, result.reason) == ("skipped", "not wanted here")


def test_check_only_steps_are_skipped_in_check_mode():
    result = outcome_step(Verified("pushed"), check_only=True)(Notebook(dry_run=True))
    assert (result.status, result.reason) == ("skipped", "check mode: not checked")
    assert outcome_step(Verified("pushed"), check_only=True)(Notebook()).status == "verified"


def test_a_failed_command_names_the_step_and_is_recorded():
    rb = Notebook()
    plan = Plan([Cmd(["sh", "-c", "echo broken >&2; exit 3"])], changed="")
    with pytest.raises(CommandFailed) as err:
        outcome_step(plan)(rb)
    assert err.value.step == "Thing"
    assert "step 'Thing'" in str(err.value) and "broken" in str(err.value)
    assert [(r.name, r.status) for r in rb.results] == [("Thing", "failed")]
    assert rb.recaps == 1  # a failed notebook ends with its recap too


def test_an_error_in_the_body_names_the_step():
    @step("Thing")
    def thing(rb):
        raise RunbookError("the engine does not answer")

    rb = Notebook()
    with pytest.raises(StepFailed, match="step 'Thing' failed: the engine does not answer"):
        thing(rb)
    assert rb.results[0].reason == "the engine does not answer"


def test_a_defect_keeps_its_own_traceback():
    @step("Thing")
    def thing(rb):
        return {}["missing"]

    with pytest.raises(KeyError):
        thing(Notebook())


def test_warnings_are_kept():
    result = outcome_step(Verified("Debian", warnings=["PID 1 is not systemd"]))(Notebook())
    assert result.warnings == ["PID 1 is not systemd"]
    assert "PID 1 is not systemd" in result._repr_html_()
    assert "WARNING" in str(result)


def test_files_show_content_diff_or_nothing():
    new = Put("/w/stack.yml", "a: 1\nb: 2\n", text=True)
    assert new.diff()["text"] == "a: 1\nb: 2\n"
    changed = Put("/w/stack.yml", "a: 1\nb: 3\n", text=True, before=b"a: 1\nb: 2\n")
    text = changed.diff()["text"]
    assert "-b: 2" in text and "+b: 3" in text and "--- /w/stack.yml (before)" in text
    secret = Put("/w/htpasswd", "admin:$2b$10$abcdef")
    assert secret.diff()["text"] == "(secret: content not shown)"
    assert "$2b$" not in str(secret.diff())
    cert = Put("/w/ca.crt", "PEM", summary="certificate for x")
    assert cert.diff()["text"] == "certificate for x"


def test_a_plan_records_what_it_wrote():
    rb = Notebook(dry_run=True)
    result = outcome_step(Plan([Put("/w/stack.yml", "a: 1\n", text=True)], changed="written"))(rb)
    assert result.diffs == [{"path": "/w/stack.yml", "text": "a: 1\n"}]


@pytest.mark.parametrize(
    ("statuses", "rolled"),
    [
        (["ok", "verified"], "ok"),
        (["ok", "changed", "skipped"], "changed"),
        (["skipped", "skipped"], "skipped"),
        (["changed", "failed"], "failed"),
        ([], "ok"),
    ],
)
def test_a_notebook_rolls_up_truthfully(statuses, rolled):
    results = [StepResult(f"s{i}", s, "why") for i, s in enumerate(statuses)]
    summary = report("nb", results)
    assert summary["status"] == rolled
    assert summary["counts"]["changed"] == statuses.count("changed")


def test_report_lists_warnings_with_their_step():
    r = StepResult("Docker service", "ok", "running", warnings=["not at boot"])
    assert report("02", [r])["warnings"] == ["Docker service: not at boot"]


# -- a step body with canned facts and no host behind it ----------------------------------


class NoHost:
    name = "nowhere"

    def __getattr__(self, attr):
        raise AssertionError(f"host.{attr} used")


def facts(state="inactive", addresses=(("eth0", "192.0.2.10"),), server="24.0.7"):
    return HostFacts(
        os=OsRelease("debian", "12", (), "Debian 12", "bookworm"),
        arch="x86_64",
        init="systemd",
        docker_server=server,
        swarm=Swarm(state=state, node_id="n1" if state == "active" else "", is_manager=True),
        compose="",
        addresses=tuple(addresses),
    )


class Params:
    swarm_advertise_addr = None


def test_swarm_body_plans_init_from_canned_facts():
    rb = Notebook(host=NoHost(), facts=facts())
    rb.p = Params()
    plan = swarm.init.body(rb)
    assert [a.describe() for a in plan.actions] == ["docker swarm init --advertise-addr 192.0.2.10"]
    rb = Notebook(host=NoHost(), facts=facts(state="active"))
    rb.p = Params()
    assert swarm.init.body(rb).actions == []


def test_a_failed_command_leaves_its_command_and_output_in_the_recap():
    from runbook_lib.context import recap_html, recap_text

    rb = Notebook()
    plan = Plan([Cmd(["sh", "-c", "echo 'no space left' >&2; exit 3"])], changed="")
    with pytest.raises(CommandFailed):
        outcome_step(plan)(rb)
    (failed,) = rb.results
    assert failed.details["exit code"] == 3 and failed.details["output"] == "no space left"
    summary = report("07", rb.results)
    assert "no space left" in recap_text(summary) and "no space left" in recap_html(summary)
