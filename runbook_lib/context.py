"""What a notebook holds: its parameters, its host, and the results of its steps.

A notebook starts with ``rb = context.start(globals(), "04-swarm")`` after its parameters
cell, calls step functions with ``rb``, and ends with ``rb.finish()``, which shows the
summary and records it in the notebook for the runner to read back.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

from . import facts as facts_mod
from . import params as params_mod
from .errors import ConnectError, RunbookError
from .hosts import Host, SSHHost
from .kernel import GO_ENV, PRECONNECT_ENV
from .steps import REPORT_MIME, StepFailed, StepResult, report

F = TypeVar("F", bound=Callable[..., StepResult])


class Runbook:
    """One notebook's run against one host."""

    def __init__(self, params: params_mod.Params, notebook: str, host: Host | None = None):
        self.p = params
        self.notebook = notebook
        self.host = host or connect(params)
        self.results: list[StepResult] = []
        self.cache: dict[str, Any] = {}  # what a module reads once per notebook

    def __repr__(self) -> str:
        mode = "  (check mode: nothing will change)" if self.dry_run else ""
        return f"{self.notebook}: host {self.host.name}, registry {self.p.registry}{mode}"

    @property
    def dry_run(self) -> bool:
        return self.p.check_mode

    def facts(self, refresh: bool = False) -> facts_mod.HostFacts:
        """The host's common facts, read once and kept while nothing changes the host
        (see :mod:`runbook_lib.facts`); ``refresh`` reads them again."""
        return facts_mod.common(self.host, refresh=refresh)

    def finish(self) -> Any:
        """Show the notebook's outcome and record it for the runner."""
        from IPython.display import display

        summary = report(self.notebook, self.results)
        text = "\n".join(str(r) for r in self.results) or "no steps ran"
        head = f"{self.notebook}: {summary['status']} ({summary['changed']} changed)"
        display({REPORT_MIME: summary, "text/plain": f"{head}\n{text}"}, raw=True)
        return None


# Connections by what they connect to: notebooks run one after another in one kernel
# (see kernel.SharedKernel) share one SSH connection; it reconnects by itself if dropped.
_CONNECTIONS: dict[tuple, SSHHost] = {}
_CONNECTIONS_LOCK = threading.Lock()  # the notebook and preconnect's thread may both ask


def connect(p: params_mod.Params) -> SSHHost:
    """The SSH host the parameters describe (it connects on first use)."""
    key_file = str(Path(p.ssh_key_file).expanduser()) if p.ssh_key_file else None
    secrets = tuple(s.ref if s else None for s in (p.ssh_password, p.sudo_password))
    key = (
        p.host,
        p.ssh_port,
        p.ssh_user,
        key_file,
        p.known_hosts,
        p.trust_unknown_host_key,
        secrets,
    )
    with _CONNECTIONS_LOCK:
        if key not in _CONNECTIONS:
            _CONNECTIONS[key] = SSHHost(
                p.host,
                port=p.ssh_port,
                user=p.ssh_user,
                key_file=key_file,
                password=p.ssh_password,
                sudo_password=p.sudo_password,
                known_hosts=p.known_hosts,
                trust_unknown_host_key=p.trust_unknown_host_key,
                timeout=p.ssh_timeout,
            )
    return _CONNECTIONS[key]


def preconnect() -> None:
    """Connect, and read the host's facts, in the background: what the first notebook of a
    run asks for first. ``runbook run`` has its kernel call this while it boots, with the
    run's parameters file in ``RUNBOOK_PRECONNECT``; nothing is sent to the host before the
    run has accepted the parameters and secrets (the file in ``RUNBOOK_PRECONNECT_GO``
    appears). Reading only: any problem is left for the notebook to find and report."""
    path, go = os.environ.pop(PRECONNECT_ENV, None), os.environ.pop(GO_ENV, None)
    if path and go:
        threading.Thread(
            target=_preconnect, args=(path, go), name="runbook-preconnect", daemon=True
        ).start()


def _preconnect(path: str, go: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)
    try:
        p = params_mod.load(params_mod.read_yaml(path))
    except Exception:  # noqa: BLE001 (the parent process reports bad parameters)
        return
    if any(s is not None and s.ref == "prompt" for s in (p.ssh_password, p.sudo_password)):
        return  # nobody could answer from a background thread
    facts_mod.prefetch_common(connect(p))


def start(namespace: MutableMapping[str, Any], notebook: str) -> Runbook:
    """Validate the notebook's parameters and prepare its host (no connection yet).

    Headless, the parameters are the notebook's own (papermill's). In JupyterLab the
    operator's saved choice fills what the parameters cell leaves at its default, and a form
    asks for it when nothing valid is chosen yet (see :mod:`runbook_lib.form`); accepting
    the form sets ``rb`` in the notebook.
    """
    from . import form

    _short_tracebacks()

    def chosen(p: params_mod.Params) -> None:
        namespace["rb"] = Runbook(p, notebook)

    return Runbook(form.parameters(namespace, on_chosen=chosen), notebook)


def _short_tracebacks() -> None:
    """Show the runbook's own errors as their message, without the library's frames: the
    message already names the step, the command and what to do."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is None:
        return

    def show(shell, etype, value, tb, tb_offset=None):  # noqa: ANN001 (IPython's signature)
        lines = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, lines)
        return lines

    shell.set_custom_exc((RunbookError,), show)


def step(name: str, *, check_only: bool = False) -> Callable[[F], F]:
    """Mark a function ``fn(rb, ...) -> StepResult`` as a step: its result, or its failure,
    is recorded in ``rb.results``. A ``check_only`` step (one that verifies something real,
    such as a push) is skipped in a dry run."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(rb: Runbook, *args: Any, **kwargs: Any) -> StepResult:
            start_time = time.monotonic()
            if check_only and rb.dry_run:
                result = StepResult(name, "skipped", "dry run: not checked", dry_run=True)
                rb.results.append(result)
                return result
            try:
                result = fn(rb, *args, **kwargs)
            except Exception as exc:
                rb.results.append(
                    StepResult(
                        name,
                        "failed",
                        (str(exc).splitlines() or [type(exc).__name__])[0],
                        seconds=time.monotonic() - start_time,
                    )
                )
                if isinstance(exc, (ConnectError, OSError)):
                    # Say which step the connection or the network failed in.
                    raise StepFailed(name, exc) from exc
                raise
            result.seconds = time.monotonic() - start_time
            rb.results.append(result)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
