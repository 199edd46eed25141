"""What a notebook holds: its parameters, its host, and the results of its steps.

A notebook starts with ``rb = context.start(globals(), "04-swarm")`` after its parameters
cell, calls step functions with ``rb``, and ends with ``rb.finish()``, which shows the
summary and records it in the notebook for the runner to read back.
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import MutableMapping
from datetime import datetime, timezone
from typing import Any

from . import facts as facts_mod
from . import names as names_mod
from . import params as params_mod
from .errors import RunbookError
from .hosts import Host, SSHHost
from .kernel import GO_ENV, PRECONNECT_ENV
from .session import Session
from .steps import COLOURS, REPORT_MIME, StepResult, report


class Runbook:
    """One notebook's run against one host."""

    def __init__(self, params: params_mod.Params, notebook: str, host: Host | None = None):
        self.p = params
        self.notebook = notebook
        self.session = Session(params)
        self.target = self.session.first
        self.host = host or self.session.host()
        self.is_view = False  # True for one host's view (see on)
        self.main = self  # the first manager's: where the registry's files are
        self._views: dict[str, Runbook] = {}
        self.results: list[StepResult] = []
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._began = time.monotonic()
        self.cache: dict[str, Any] = {}  # what a module reads once per notebook

    def __repr__(self) -> str:
        mode = "  (check mode: nothing will change)" if self.dry_run else ""
        return f"{self.notebook}: host {self.host.name}, registry {self.p.registry}{mode}"

    @property
    def dry_run(self) -> bool:
        return self.p.check_mode

    @property
    def names(self) -> names_mod.Names:
        """The names and paths derived from the parameters (see :mod:`runbook_lib.names`)."""
        return names_mod.of(self.p)

    def on(self, target) -> Runbook:  # noqa: ANN001 (a session.Target)
        """This notebook on one host of the swarm: that host's connection, facts and cache,
        the same parameters. A step that runs on each host gives its body one of these."""
        view = self._views.get(target.name)
        if view is None:
            mine = target == self.target
            view = Runbook(self.p, self.notebook, self.host if mine else self.session.host(target))
            view.target, view.is_view, view.main = target, True, self
            if mine:
                view.cache = self.cache  # what this notebook read on its host serves here too
            view.recap = lambda: None  # the notebook shows its recap, not each view
            self._views[target.name] = view
        return view

    def facts(self, refresh: bool = False) -> facts_mod.HostFacts:
        """The host's common facts, read once and kept while nothing changes the host
        (see :mod:`runbook_lib.facts`); ``refresh`` reads them again."""
        return facts_mod.common(self.host, refresh=refresh)

    def finish(self) -> Any:
        """Show the notebook's outcome and record it for the runner."""
        self.recap()

    def recap(self) -> None:
        """Show the outcome so far: every step's line, the warnings, the counts. Shown by
        :meth:`finish`, and by a failing step, so that a failed notebook ends with it too;
        the runner reads back the last one."""
        from IPython.display import display

        summary = report(self.notebook, self.results)
        summary["started"] = self.started
        summary["seconds"] = round(time.monotonic() - self._began, 2)
        display(
            {
                REPORT_MIME: summary,
                "text/plain": recap_text(summary),
                "text/html": recap_html(summary),
            },
            raw=True,
        )


def _counts(summary: dict[str, Any]) -> str:
    counts = summary.get("counts", {})
    shown = [f"{n} {s}" for s, n in counts.items() if n]
    if summary.get("warnings"):
        shown.append(f"{len(summary['warnings'])} warning(s)")
    return ", ".join(shown) or "no steps"


def recap_text(summary: dict[str, Any]) -> str:
    """The recap as plain text: a head line, then a line per step and per warning."""
    steps = [StepResult(**s) for s in summary["steps"]]
    head = (
        f"{summary['notebook']}: {summary['status']} ({_counts(summary)}; "
        f"{summary.get('seconds', 0):.1f} s, started {summary.get('started', '?')})"
    )
    lines = [head]
    for s in steps:
        lines.append(f"{s.label:>12}  {s.title}: {s.reason}")
        if s.status == "failed":
            lines += [f"{'':>14}{k}: {v}" for k, v in s.details.items()]
    lines += [f"{'WARNING':>12}  {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)


def recap_html(summary: dict[str, Any]) -> str:
    """The recap as a table: one row per step, warnings under it, the head in colour."""
    esc = html.escape
    colour = COLOURS.get(summary["status"], "#555")
    rows = []
    for s in summary["steps"]:
        r = StepResult(**s)
        rows.append(
            f'<tr><td style="text-align:left;color:{COLOURS.get(r.status, "#555")}">'
            f"<b>{esc(r.label)}</b></td><td style='text-align:left'>{esc(r.title)}</td>"
            f"<td style='text-align:left'>{esc(r.reason)}</td>"
            f"<td style='text-align:right'>{r.seconds:.1f} s</td></tr>"
        )
        if r.status == "failed" and r.details:
            shown = "\n".join(f"{k}: {v}" for k, v in r.details.items())
            rows.append(
                f"<tr><td></td><td></td><td colspan='2' style='text-align:left'>"
                f'<pre style="margin:0;font-size:85%">{esc(shown)}</pre></td></tr>'
            )
        for w in r.warnings:
            rows.append(
                f'<tr><td style="text-align:left;color:{COLOURS["warning"]}"><b>warning</b></td>'
                f"<td style='text-align:left'>{esc(r.title)}</td>"
                f'<td colspan="2" style="text-align:left;color:{COLOURS["warning"]}">{esc(w)}</td></tr>'
            )
    return (
        f'<div class="runbook-recap"><p><b style="color:{colour}">{esc(summary["status"])}</b> '
        f"<b>{esc(summary['notebook'])}</b>: {esc(_counts(summary))}; "
        f"{summary.get('seconds', 0):.1f} s, started {esc(str(summary.get('started', '?')))}</p>"
        '<table><thead><tr><th style="text-align:left">status</th>'
        '<th style="text-align:left">step</th><th style="text-align:left">result</th>'
        '<th style="text-align:right">time</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )


def connect(p: params_mod.Params) -> SSHHost:
    """The first manager's connection (it connects on first use); see :mod:`runbook_lib.session`."""
    return Session(p).host()


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
