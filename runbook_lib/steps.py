"""Steps: look, decide, act; and the record of what each step did.

A step is a function ``fn(rb, ...)`` under the :func:`step` decorator. Its body reads facts
from the host and returns what it found: :class:`Found` (already as wanted), :class:`Plan`
(the actions that would bring the host to the wanted state), :class:`Verified` (a check that
passed), :class:`Skip` (not done, and why), or :class:`Done` (a verification that itself
changed something, such as a push). The decorator alone owns the rest, as pyinfra's
``@operation`` does (``pyinfra/api/operation.py``): the dry run, skipping, applying the
plan, counting the change (so cached facts are read again), timing, naming the step in its
errors, and recording the result. "Changed" has a definition: at least one action ran and
succeeded.

A step body is testable without a host behind it: call ``fn.body(rb)`` with canned facts
and look at the outcome it returns.
"""

from __future__ import annotations

import difflib
import functools
import html
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from . import progress
from .errors import CommandFailed, RunbookError
from .hosts import Host

Status = Literal["ok", "changed", "verified", "skipped", "failed"]
REPORT_MIME = "application/vnd.runbook.report+json"

# What each status means, for the recap and the report.
STATUSES: dict[str, str] = {
    "ok": "already as wanted",
    "changed": "something ran and succeeded",
    "verified": "a check that passed",
    "skipped": "not done, with why",
    "failed": "stopped the notebook",
}
COLOURS = {
    "ok": "#2e7d32",
    "changed": "#e65100",
    "verified": "#1565c0",
    "skipped": "#616161",
    "failed": "#c62828",
    "warning": "#8e24aa",
}


@dataclass(frozen=True)
class Cmd:
    """A command to run as root; ``stdin`` may carry data (never shown). A long one (an
    install) shows its output's latest line as live progress (:mod:`runbook_lib.progress`),
    under ``watch``: a short name for it, such as ``apt-get install docker.io``."""

    argv: Sequence[str]
    stdin: bytes | str | None = field(default=None, repr=False)  # may be a secret
    timeout: float | None = 600
    watch: str = ""
    shown: str = ""  # how the record shows it, when the command line is not for reading

    def describe(self) -> str:
        return self.shown or shlex.join(self.argv)

    def apply(self, host: Host) -> None:
        if not self.watch:
            host.run(self.argv, stdin=self.stdin, timeout=self.timeout)
            return

        with progress.activity(self.watch, unit="lines", quiet=1) as p:
            host.run(self.argv, stdin=self.stdin, timeout=self.timeout, on_line=p.line)

    def diff(self) -> dict[str, str] | None:
        return None


@dataclass(frozen=True)
class Put:
    """A file to write atomically with a mode and owner.

    Its content is shown only for a file that is not secret (``text=True``): whole when the
    file is new, as a unified diff against ``before`` when it changes, as ``ansible --diff``
    does. ``summary`` stands in for content a reader needs in short (a certificate's names
    and expiry). Anything else is shown as secret."""

    path: str
    data: bytes | str = field(repr=False)  # may be a secret
    mode: int = 0o644
    owner: str = "root:root"
    text: bool = False
    before: bytes | None = None
    summary: str | None = None

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:o})"

    def apply(self, host: Host) -> None:
        host.put(self.path, self.data, mode=self.mode, owner=self.owner)

    def diff(self) -> dict[str, str]:
        raw = self.data.encode() if isinstance(self.data, str) else self.data
        if self.text:
            new = raw.decode("utf-8", "replace").splitlines(keepends=True)
            if self.before is None:
                shown = "".join(new)
            elif self.before == raw:
                shown = "(content unchanged; mode or owner fixed)"
            else:
                old = self.before.decode("utf-8", "replace").splitlines(keepends=True)
                shown = "".join(
                    difflib.unified_diff(old, new, f"{self.path} (before)", f"{self.path}")
                )
        elif self.summary:
            shown = self.summary
        else:
            shown = "(secret: content not shown)"
        return {"path": self.path, "text": shown}


@dataclass(frozen=True)
class Call:
    """Work that is not one command (e.g. waiting for a service); ``fn`` gets the host."""

    text: str
    fn: Callable[[Host], Any]

    def describe(self) -> str:
        return self.text

    def apply(self, host: Host) -> None:
        self.fn(host)

    def diff(self) -> dict[str, str] | None:
        return None


Action = Cmd | Put | Call


# -- what a step body returns ----------------------------------------------------------


@dataclass
class Found:
    """Already as wanted: ``ok``, with why."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Verified:
    """A check that passed: ``verified``."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Skip:
    """Not done: ``skipped``, with why."""

    reason: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Done:
    """A verification that changed something itself (a push adds content to the
    registry): ``changed``. Only steps that never run in a dry run return it."""

    reason: str
    actions: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The actions that bring the host to the wanted state; none means ``ok``.

    ``changed`` and ``unchanged`` are the reasons for each case. ``after`` runs once the
    plan was applied (never in a dry run) and may add to the result: the version that was
    installed, the node a swarm made. ``on`` is the host the plan is for, when it is not
    the notebook's (this machine, for the runner's own trust)."""

    actions: Sequence[Action]
    changed: str
    unchanged: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    after: Callable[[StepResult], None] | None = None
    on: Host | None = None
    diffs: list[dict[str, str]] = field(default_factory=list)  # what changes, when no Put shows it


Outcome = Found | Verified | Skip | Done | Plan


@dataclass
class StepResult:
    """What one step found or did, in a form a notebook shows and a test reads."""

    name: str
    status: Status
    reason: str
    actions: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    diffs: list[dict[str, str]] = field(default_factory=list)
    host: str | None = None  # set when the step ran on each host of the swarm

    @property
    def changed(self) -> bool:
        return self.status == "changed"

    @property
    def title(self) -> str:
        """The step's name, and the host it ran on when it ran on each."""
        return self.name if self.host is None else f"{self.name} on {self.host}"

    @property
    def label(self) -> str:
        return "would change" if self.dry_run and self.changed else self.status

    def __str__(self) -> str:
        text = f"{self.label:>12}  {self.title}: {self.reason}"
        for w in self.warnings:
            text += f"\n{'WARNING':>12}  {w}"
        for a in self.actions:
            text += f"\n{'':>14}- {a}"
        return text

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return render_html(self)


def _esc(value: Any) -> str:
    return html.escape(str(value))


def render_html(r: StepResult) -> str:
    """One step as a notebook shows it: label, name, reason, time; warnings in colour; the
    actions; the details as a two-column table; what was written, as content or diff."""
    colour = COLOURS.get(r.status, "#555")
    took = f' <span style="color:#777">({r.seconds:.1f} s)</span>' if r.seconds >= 0.1 else ""
    parts = [
        f'<div class="runbook-step runbook-{r.status}" style="margin:0.2em 0">'
        f'<b style="color:{colour}">{_esc(r.label)}</b> <b>{_esc(r.title)}</b>: '
        f"{_esc(r.reason)}{took}"
    ]
    for w in r.warnings:
        parts.append(
            f'<div style="color:{COLOURS["warning"]};font-weight:bold">⚠ warning: {_esc(w)}</div>'
        )
    if r.actions:
        parts.append("<ul>" + "".join(f"<li><code>{_esc(a)}</code></li>" for a in r.actions))
        parts.append("</ul>")
    if r.details:
        rows = "".join(
            f'<tr><th style="text-align:left;padding-right:1em">{_esc(k)}</th>'
            f'<td style="text-align:left">{_esc(v)}</td></tr>'
            for k, v in r.details.items()
        )
        parts.append(f'<table style="margin-left:0">{rows}</table>')
    for d in r.diffs:
        parts.append(
            f"<details><summary>{_esc(_what_was_written(d['text']))} "
            f"<code>{_esc(d['path'])}</code></summary>"
            f'<pre style="font-size:85%">{_esc(d["text"])}</pre></details>'
        )
    parts.append("</div>")
    return "".join(parts)


def _what_was_written(text: str) -> str:
    if text.startswith("--- "):
        lines = text.splitlines()
        added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
        removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
        return f"diff (+{added} -{removed}):"
    if text.startswith("("):
        return "written, not shown:"
    if text.startswith(("certificate:", "the registry's CA:")):
        return "certificate written:"
    return f"content written ({len(text.splitlines())} lines):"


class Note(str):
    """A fact a notebook states between its steps (not a step: no status, not counted)."""

    def __repr__(self) -> str:
        return f"        note  {self}"

    def _repr_html_(self) -> str:
        return f'<div style="color:#555"><b>note</b> {_esc(self)}</div>'


class StepFailed(RunbookError):
    """A step could not finish; names the step and carries the underlying error."""

    def __init__(self, step: str, cause: Exception):
        self.step = step
        self.cause = cause
        super().__init__(f"step {step!r} failed: {cause}")


class _Runbook(Protocol):
    """What the decorator needs of a notebook's :class:`runbook_lib.context.Runbook`."""

    host: Host
    results: list[StepResult]

    @property
    def dry_run(self) -> bool: ...

    def recap(self) -> Any: ...


def step(
    name: str,
    *,
    check_only: bool = False,
    skip: Callable[[Any], str | None] | None = None,
    each_host: bool | str = False,
) -> Callable[[Callable[..., Outcome]], Callable[..., StepResult]]:
    """Make ``fn(rb, ...) -> Outcome`` a step named ``name``.

    ``skip(rb)`` returns why the step is not wanted this time (None when it is), before the
    body looks at anything. A ``check_only`` step verifies something real (a push, the
    registry answering) and is skipped in a dry run. On failure the step's line is
    recorded, the notebook's recap is shown (a failed notebook ends with it too), and the
    error names the step.

    An ``each_host`` step runs on every host of the swarm at once (see
    :meth:`runbook_lib.session.Session.each`), its body given each host's view of ``rb``;
    it records one result per host and returns them as :class:`HostResults`. One host's
    failure does not stop the others: the step fails after all have finished, naming the
    hosts that failed. With one host it is an ordinary step. ``each_host="leaving"`` runs
    it on each host being taken out of the swarm (``remove_nodes``) instead."""

    def decorate(fn: Callable[..., Outcome]) -> Callable[..., StepResult]:
        @functools.wraps(fn)
        def wrapper(rb: _Runbook, *args: Any, **kwargs: Any) -> StepResult:
            if each_host and not getattr(rb, "is_view", True):
                if each_host == "leaving" and rb.session.leaving:
                    return _on_each_host(rb, name, one, args, kwargs, rb.session.leaving)
                if len(rb.session.targets) > 1:
                    return _on_each_host(rb, name, one, args, kwargs, rb.session.targets)
            return one(rb, *args, **kwargs)

        def one(rb: _Runbook, *args: Any, **kwargs: Any) -> StepResult:
            began = time.monotonic()
            try:
                why = skip(rb) if skip else None
                if why is None and check_only and rb.dry_run:
                    why = "check mode: not checked"
                if why is not None:
                    result = StepResult(name, "skipped", why, dry_run=rb.dry_run)
                else:
                    result = settle(rb, name, fn(rb, *args, **kwargs))
            except Exception as exc:
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                rb.results.append(
                    StepResult(
                        name,
                        "failed",
                        first,
                        details=_failure(exc),
                        seconds=time.monotonic() - began,
                    )
                )
                rb.recap()
                if isinstance(exc, CommandFailed):
                    raise (exc if exc.step else CommandFailed(exc.result, step=name)) from None
                if isinstance(exc, StepFailed):
                    raise
                if isinstance(exc, RunbookError | OSError):
                    # Its message says what to do; this says where.
                    raise StepFailed(name, exc) from None
                raise  # a defect: its whole traceback helps
            result.seconds = time.monotonic() - began
            rb.results.append(result)
            return result

        wrapper.body = fn  # type: ignore[attr-defined]
        return wrapper

    return decorate


class HostResults(list):
    """One step's results on each host, shown as one block of lines."""

    def __repr__(self) -> str:
        return "\n".join(str(r) for r in self)

    def _repr_html_(self) -> str:
        return "".join(render_html(r) for r in self)


def _on_each_host(rb: _Runbook, name: str, one: Callable[..., StepResult], args, kwargs, hosts):
    """Run the step on every host's view; record the results in the notebook's order of
    hosts; fail, once all are done, naming the hosts that failed."""

    def on(target) -> StepResult:  # noqa: ANN001 (a session.Target)
        view = rb.on(target)  # its results: this host's steps in this notebook
        try:
            with progress.on_host(target.name):
                result = one(view, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (recorded as this host's failure)
            result = view.results[-1] if view.results else StepResult(name, "failed", str(exc))
            result.details = {**result.details, "error": f"{type(exc).__name__}: {exc}"}
        result.host = target.name
        return result

    results = HostResults(r for _, r in rb.session.each(on, hosts))
    rb.results.extend(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        rb.recap()
        why = "; ".join(f"{r.host}: {r.reason}" for r in failed)
        raise StepFailed(
            name, RunbookError(f"failed on {len(failed)} of {len(results)} hosts: {why}")
        )
    return results


def _failure(exc: Exception) -> dict[str, Any]:
    """What the recap of a failed notebook shows of the failure: the command, its exit
    code and the last lines of its output (a command's messages never hold a secret: they
    are shown by their ``display``)."""
    if not isinstance(exc, CommandFailed):
        return {}
    r = exc.result
    tail = "\n".join((r.stderr.strip() or r.stdout.strip()).splitlines()[-8:])
    return {"command": r.command, "exit code": r.exited, **({"output": tail} if tail else {})}


def settle(rb: _Runbook, name: str, outcome: Outcome) -> StepResult:
    """Turn what a body returned into its result; apply a plan unless this is a dry run."""
    dry = rb.dry_run
    if isinstance(outcome, Found):
        return StepResult(name, "ok", outcome.reason, [], outcome.details, 0, dry, outcome.warnings)
    if isinstance(outcome, Verified):
        return StepResult(
            name, "verified", outcome.reason, [], outcome.details, 0, dry, outcome.warnings
        )
    if isinstance(outcome, Skip):
        return StepResult(name, "skipped", outcome.reason, dry_run=dry, warnings=outcome.warnings)
    if isinstance(outcome, Done):
        rb.host.changes += 1  # what the body did may make cached facts stale
        return StepResult(
            name,
            "changed",
            outcome.reason,
            outcome.actions,
            outcome.details,
            0,
            dry,
            outcome.warnings,
        )
    if not isinstance(outcome, Plan):
        raise TypeError(f"step {name!r} returned {type(outcome).__name__}, not an outcome")
    if not outcome.actions:
        return StepResult(
            name, "ok", outcome.unchanged, [], outcome.details, 0, dry, outcome.warnings
        )
    result = StepResult(
        name,
        "changed",
        outcome.changed,
        [a.describe() for a in outcome.actions],
        dict(outcome.details),
        0,
        dry,
        list(outcome.warnings),
        [d for a in outcome.actions if (d := a.diff())] + outcome.diffs,
    )
    if not dry:
        apply(outcome.on or rb.host, outcome.actions)
        if outcome.after:
            outcome.after(result)
    return result


def apply(host: Host, plan: Sequence[Action]) -> None:
    """Run a plan's actions in order. Facts read before or during this are out of date
    (see :mod:`runbook_lib.facts`): the host's change counter moves on both sides."""
    host.changes += 1
    try:
        for action in plan:
            action.apply(host)
    finally:
        host.changes += 1


def report(notebook: str, results: Sequence[StepResult]) -> dict[str, Any]:
    """The outcome of a notebook, as the runner reads it back from its last report.

    A notebook is ``failed`` when a step failed, ``changed`` when one changed something,
    ``skipped`` when every step was skipped, else ``ok``."""
    statuses = [r.status for r in results]
    if "failed" in statuses:
        status = "failed"
    elif "changed" in statuses:
        status = "changed"
    elif statuses and all(s == "skipped" for s in statuses):
        status = "skipped"
    else:
        status = "ok"
    return {
        "notebook": notebook,
        "status": status,
        "changed": statuses.count("changed"),
        "counts": {s: statuses.count(s) for s in STATUSES},
        "warnings": [f"{r.title}: {w}" for r in results for w in r.warnings],
        "steps": [asdict(r) for r in results],
    }


def to_json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=str, indent=1)


# -- files and directories, the most common plans ----------------------------------------

_FILE_STATE = r"""
for p in "$@"; do
  if [ -e "$p" ]; then
    printf '%s %s %s ' "$(stat -c '%a' "$p")" "$(stat -c '%U:%G' "$p")" "$(stat -c '%F' "$p" | tr ' ' _)"
    if [ -f "$p" ]; then sha256sum < "$p" | cut -d' ' -f1; else echo -; fi
  else
    echo missing
  fi
done
"""


@dataclass(frozen=True)
class PathState:
    """Mode, owner, kind and content digest of a path on the host; ``exists`` False if absent."""

    exists: bool
    mode: int = 0
    owner: str = ""
    kind: str = ""
    sha256: str = ""


def path_states(host: Host, *paths: str) -> list[PathState]:
    """Look at several paths in one command."""
    out = host.sh(_FILE_STATE, *paths, display=f"stat {' '.join(paths)}").stdout.splitlines()
    states = []
    for line in out:
        parts = line.split()
        if parts == ["missing"]:
            states.append(PathState(False))
        else:
            states.append(
                PathState(True, int(parts[0], 8), parts[1], parts[2], parts[3].strip("-"))
            )
    return states


def plan_dir(state: PathState, path: str, mode: int, owner: str = "root:root") -> list[Action]:
    """Create a directory, or fix its mode and owner."""
    if not state.exists:
        user, group = owner.split(":")
        return [Cmd(["install", "-d", "-m", f"{mode:o}", "-o", user, "-g", group, path])]
    return plan_mode(state, path, mode, owner)


def plan_mode(state: PathState, path: str, mode: int, owner: str = "root:root") -> list[Action]:
    """Fix an existing path's mode and owner (nothing for a missing one)."""
    plan: list[Action] = []
    if state.exists and state.owner != owner:
        plan.append(Cmd(["chown", owner, path]))
    if state.exists and state.mode != mode:
        plan.append(Cmd(["chmod", f"{mode:o}", path]))
    return plan


def plan_file(
    state: PathState,
    path: str,
    data: bytes | str,
    mode: int = 0o644,
    owner: str = "root:root",
    *,
    host: Host | None = None,
) -> list[Action]:
    """Write a file whose content, mode or owner differs from what is wanted.

    Given the ``host``, the file is one a reader may see (not secret): the plan shows its
    content, or a diff against what the host holds now. Without it nothing is shown."""
    import hashlib

    raw = data.encode() if isinstance(data, str) else data
    same = state.exists and state.sha256 == hashlib.sha256(raw).hexdigest()
    if same and state.mode == mode and state.owner == owner:
        return []
    if host is None:
        return [Put(path, raw, mode, owner)]
    before = (raw if same else host.get(path)) if state.exists else None
    return [Put(path, raw, mode, owner, text=True, before=before)]
