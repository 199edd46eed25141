"""Secret references: parameters name where a secret is, never the secret itself.

papermill copies every parameter into the executed notebook, so a password given as a
parameter would stay in the audit record forever. A reference is resolved inside the
kernel, when it is needed, and the value is never printed:

- ``env:NAME``   the environment variable NAME of the process running the notebook;
- ``file:PATH``  the first line of a file (``~`` expanded); keep it mode 0600;
- ``prompt``     ask the person at the notebook (refused when nobody is there, as under
  papermill).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ParameterError, SecretError

_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|prompt)$")
EXAMPLE = "env:NAME or file:~/.config/NAME.secret"


def exposure(path: Path) -> str | None:
    """What is wrong with a file that holds a secret (a password, a private key) when group
    or others may read or write it, as ssh refuses such a key ("UNPROTECTED PRIVATE KEY
    FILE"): whoever can read it has the secret already. None when it is its owner's alone."""
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    return (
        f"{path} is readable or writable by group or others (mode {mode:o}); make it yours "
        f"alone: chmod 600 {path}"
    )


def exposed(path: Path, parameter: str) -> None:
    """Refuse a secret file that others may read (see :func:`exposure`)."""
    problem = exposure(path)
    if problem:
        raise SecretError(f"parameter {parameter!r}: {problem}")


class Secret:
    """A reference to a secret. ``str()`` and ``repr()`` show the reference, not the value."""

    def __init__(self, ref: str, *, parameter: str = "secret"):
        if not isinstance(ref, str) or not _REF.match(ref):
            # The value may be a pasted password: never echo it back.
            raise ParameterError(
                parameter,
                "<hidden>",
                "a secret must be a reference, not the value itself",
                EXAMPLE,
            )
        self.ref = ref
        self.parameter = parameter
        self._value: str | None = None

    def reveal(self) -> str:
        """The secret's value (resolved once, then kept in memory)."""
        if self._value is None:
            self._value = self._resolve()
        return self._value

    def _resolve(self) -> str:
        kind, _, where = self.ref.partition(":")
        if kind == "env":
            value = os.environ.get(where)
            if not value:
                raise SecretError(
                    f"parameter {self.parameter!r}: environment variable {where} is not set "
                    "(or empty) in the process running the notebook. Export it before "
                    "starting Jupyter or `runbook run`."
                )
            return value
        if kind == "file":
            path = Path(where).expanduser()
            try:
                exposed(path, self.parameter)
                text = path.read_text()
            except OSError as exc:
                raise SecretError(
                    f"parameter {self.parameter!r}: cannot read {path}: {exc.strerror}"
                ) from None
            value = text.splitlines()[0] if text else ""
            if not value:
                raise SecretError(f"parameter {self.parameter!r}: {path} is empty")
            return value
        return self._prompt()

    def _prompt(self) -> str:
        import getpass

        try:
            value = getpass.getpass(f"{self.parameter}: ")
        except Exception as exc:  # StdinNotImplementedError under papermill, EOFError...
            raise SecretError(
                f"parameter {self.parameter!r} is 'prompt' but nobody can answer here "
                f"({type(exc).__name__}); use env:NAME or file:PATH"
            ) from None
        if not value:
            raise SecretError(f"parameter {self.parameter!r}: empty answer")
        return value

    def __repr__(self) -> str:
        return f"Secret({self.ref!r})"

    __str__ = __repr__
