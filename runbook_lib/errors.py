"""The errors the runbook raises: one base class, each naming what failed and what to do.

Every error carries a message written for the operator: what went wrong, where, and the
next thing to try. Nothing in a message may contain a secret value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .hosts import Result


class RunbookError(Exception):
    """Base class of every error raised on purpose by the runbook."""


class ParameterError(RunbookError, ValueError):
    """A parameter is missing or wrong. Raised before anything on the host changes."""

    def __init__(self, name: str, value: Any, problem: str, example: str | None = None):
        self.name = name
        self.value = value
        self.problem = problem
        self.example = example
        shown = "<secret>" if _looks_secret(name) else _bounded(value)
        msg = f"parameter {name!r} = {shown}: {problem}"
        if example:
            msg += f" (for example: {example})"
        super().__init__(msg)


def _bounded(value: Any) -> str:
    """``repr(value)``, cut short: a value may be huge (a YAML alias bomb expands to
    billions of items) and a message must stay readable."""
    import reprlib

    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlevel = 120, 120, 2
    short.maxlist = short.maxdict = short.maxtuple = short.maxset = 4
    text = short.repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _looks_secret(name: str) -> bool:
    return any(word in name for word in ("password", "secret", "token", "key_data"))


class SecretError(RunbookError):
    """A secret reference cannot be resolved (unset variable, unreadable file, no prompt)."""


class ConnectError(RunbookError):
    """The host cannot be reached or refuses us; names host, port, user and what to check."""


class HostKeyError(ConnectError):
    """The host's SSH key is unknown or has changed."""


class CommandFailed(RunbookError):
    """A command on the host exited non-zero. Carries the :class:`Result`."""

    def __init__(self, result: Result, step: str | None = None):
        self.result = result
        self.step = step
        super().__init__(self._message())

    def _message(self) -> str:
        r = self.result
        where = f"step {self.step!r}: " if self.step else ""
        lines = [f"{where}command failed with exit code {r.exited} on {r.host}: {r.command}"]
        tail = _tail(r.stderr) or _tail(r.stdout)
        if tail:
            lines.append("--- last lines of output ---")
            lines.append(tail)
        return "\n".join(lines)


class UnsupportedHost(RunbookError):
    """The host is something the runbook cannot set up (OS, architecture, init system)."""


class MissingInput(RunbookError):
    """A file an earlier notebook makes is not there (yet)."""


class WaitTimeout(RunbookError):
    """Something did not become ready in time; says what was last seen."""


def _tail(text: str, lines: int = 12) -> str:
    text = (text or "").strip()
    return "\n".join(text.splitlines()[-lines:])
