"""Steps: look, decide, act; and the record of what each step did.

A step reads facts from the host, plans the actions that would bring it to the wanted state
(an empty plan when it is already there), and applies them unless the run is a dry run.
"Changed" has a definition: at least one action ran and succeeded. A step returns a
:class:`StepResult`, which a notebook shows as one readable line.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import CommandFailed, RunbookError
from .hosts import Host

Status = Literal["ok", "changed", "failed", "skipped"]
REPORT_MIME = "application/vnd.runbook.report+json"


@dataclass(frozen=True)
class Cmd:
    """A command to run as root; ``stdin`` may carry data (never shown)."""

    argv: Sequence[str]
    stdin: bytes | str | None = None
    timeout: float | None = 600

    def describe(self) -> str:
        import shlex

        return shlex.join(self.argv)

    def apply(self, host: Host) -> None:
        host.run(self.argv, stdin=self.stdin, timeout=self.timeout)


@dataclass(frozen=True)
class Put:
    """A file to write atomically with a mode and owner. Its content is never shown."""

    path: str
    data: bytes | str
    mode: int = 0o644
    owner: str = "root:root"

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:o})"

    def apply(self, host: Host) -> None:
        host.put(self.path, self.data, mode=self.mode, owner=self.owner)


@dataclass(frozen=True)
class Call:
    """Work that is not one command (e.g. waiting for a service); ``fn`` gets the host."""

    text: str
    fn: Callable[[Host], Any]

    def describe(self) -> str:
        return self.text

    def apply(self, host: Host) -> None:
        self.fn(host)


Action = Cmd | Put | Call


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

    @property
    def changed(self) -> bool:
        return self.status == "changed"

    def _label(self) -> str:
        return "would change" if self.dry_run and self.changed else self.status

    def __str__(self) -> str:
        text = f"{self._label():>12}  {self.name}: {self.reason}"
        for a in self.actions:
            text += f"\n{'':>14}- {a}"
        return text

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        colour = {"ok": "#2e7d32", "changed": "#e65100", "failed": "#c62828"}.get(
            self.status, "#555"
        )
        rows = "".join(f"<li><code>{html.escape(a)}</code></li>" for a in self.actions)
        details = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.details.items()
        )
        return (
            f'<div><b style="color:{colour}">{html.escape(self._label())}</b> '
            f"<b>{html.escape(self.name)}</b>: {html.escape(self.reason)}"
            + (f"<ul>{rows}</ul>" if rows else "")
            + (f"<table>{details}</table>" if details else "")
            + "</div>"
        )


class StepFailed(RunbookError):
    """A step could not finish; names the step and carries the underlying error."""

    def __init__(self, step: str, cause: Exception):
        self.step = step
        self.cause = cause
        super().__init__(f"step {step!r} failed: {cause}")


def apply(
    host: Host,
    name: str,
    plan: Sequence[Action],
    *,
    unchanged: str,
    changed: str | None = None,
    dry_run: bool = False,
    details: dict[str, Any] | None = None,
) -> StepResult:
    """Apply a plan and say what happened: ``ok`` when the plan is empty, else ``changed``."""
    start = time.monotonic()
    described = [a.describe() for a in plan]
    if not plan:
        return StepResult(
            name, "ok", unchanged, [], details or {}, time.monotonic() - start, dry_run
        )
    if not dry_run:
        # Facts read before or during this are out of date (see runbook_lib.facts).
        host.changes += 1
        try:
            for action in plan:
                try:
                    action.apply(host)
                except CommandFailed as exc:
                    raise CommandFailed(exc.result, step=name) from None
                except RunbookError as exc:
                    raise StepFailed(name, exc) from None
        finally:
            host.changes += 1
    return StepResult(
        name,
        "changed",
        changed or f"{len(plan)} action(s)",
        described,
        details or {},
        time.monotonic() - start,
        dry_run,
    )


def report(notebook: str, results: Sequence[StepResult]) -> dict[str, Any]:
    """The outcome of a notebook, as the runner reads it back from the last cell."""
    statuses = [r.status for r in results]
    status = "failed" if "failed" in statuses else "changed" if "changed" in statuses else "ok"
    return {
        "notebook": notebook,
        "status": status,
        "changed": statuses.count("changed"),
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
        return [
            Cmd(
                [
                    "install",
                    "-d",
                    "-m",
                    f"{mode:o}",
                    "-o",
                    owner.split(":")[0],
                    "-g",
                    owner.split(":")[1],
                    path,
                ]
            )
        ]
    plan: list[Action] = []
    if state.mode != mode:
        plan.append(Cmd(["chmod", f"{mode:o}", path]))
    if state.owner != owner:
        plan.append(Cmd(["chown", owner, path]))
    return plan


def plan_file(
    state: PathState, path: str, data: bytes | str, mode: int = 0o644, owner: str = "root:root"
) -> list[Action]:
    """Write a file whose content, mode or owner differs from what is wanted."""
    import hashlib

    raw = data.encode() if isinstance(data, str) else data
    if (
        state.exists
        and state.sha256 == hashlib.sha256(raw).hexdigest()
        and state.mode == mode
        and state.owner == owner
    ):
        return []
    return [Put(path, raw, mode, owner)]
