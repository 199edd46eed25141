"""The run driver: execute the notebooks in order with papermill, keep each as a record.

Each run gets a folder ``runs/<UTC time>-<host>/`` with one executed notebook per section,
``summary.json`` and the report a person opens first, ``index.html`` (see
:mod:`runbook_lib.report`). The run stops at the first failing notebook; the executed copy
of that notebook shows the failing cell (papermill marks it), and the error names notebook,
cell and error. A run that fails or is interrupted (Ctrl-C, SIGTERM) still writes its
summary and report. Parameters are validated, and secret references resolved, before
anything runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ParameterError
from .kernel import PRECONNECT_ENV, SharedKernel

# Light imports only up to here: the kernel is started before the library's heavier parts
# (pydantic, paramiko, papermill) load in this process; see runbook_lib.kernel.
NOTEBOOKS = Path(
    os.environ.get("RUNBOOK_NOTEBOOKS", Path(__file__).resolve().parents[1] / "notebooks")
)


class Terminated(KeyboardInterrupt):
    """The run was asked to stop by a signal (SIGTERM); handled as Ctrl-C is."""


@dataclass
class NotebookOutcome:
    name: str
    status: str  # ok, changed, skipped, failed, interrupted
    changed: int = 0
    seconds: float = 0.0
    output: str | None = None  # the executed notebook, also when it failed or was interrupted
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # its steps by status
    warnings: list[str] = field(default_factory=list)  # "Step: warning"
    steps: list[dict[str, Any]] = field(default_factory=list)  # report.step_line of each


@dataclass
class RunSummary:
    host: str
    registry: str
    started: str
    check: bool
    folder: str
    notebooks: list[NotebookOutcome] = field(default_factory=list)
    status: str = "running"  # then failed, interrupted, changed or ok (report.run_status)
    finished: str | None = None
    seconds: float | None = None
    version: str = __version__
    commit: str | None = None  # the runbook's git commit, "-dirty" when modified
    params_file: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # as in the file: references
    counts: dict[str, int] = field(default_factory=dict)  # every step of the run by status
    warnings: list[str] = field(default_factory=list)  # "notebook: Step: warning"
    stopped: str | None = None  # why the run was interrupted (Ctrl-C, SIGTERM), wherever

    @property
    def failed(self) -> NotebookOutcome | None:
        return next((n for n in self.notebooks if n.status == "failed"), None)

    @property
    def interrupted(self) -> NotebookOutcome | None:
        return next((n for n in self.notebooks if n.status == "interrupted"), None)

    def close(self, began: float) -> None:
        """The run has ended: its end, duration, status and totals."""
        from . import report

        self.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.seconds = round(time.monotonic() - began, 3)
        notebooks = [asdict(n) for n in self.notebooks]
        self.status = report.run_status(notebooks)
        if self.stopped and self.status not in ("failed", "interrupted"):
            # Stopped between notebooks, or before the first: still an interrupted run.
            self.status = "interrupted"
        self.counts, self.warnings = report.run_totals(notebooks)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2)


def notebooks(directory: Path | None = None) -> list[Path]:
    return sorted(p for p in (directory or NOTEBOOKS).glob("[0-9][0-9]-*.ipynb"))


def select(all_nbs: list[Path], start: str | None, only: list[str] | None) -> list[Path]:
    """The notebooks to run, by number prefix (``--from 04``, ``--only 05 06``)."""
    known = {p.name[:2] for p in all_nbs}
    for n in [start, *(only or [])]:
        if n is not None and n.zfill(2) not in known:
            raise ParameterError("notebook", n, "no such notebook number", ", ".join(sorted(known)))
    chosen = all_nbs
    if start:
        chosen = [p for p in chosen if p.name[:2] >= start.zfill(2)]
    if only:
        wanted = {n.zfill(2) for n in only}
        return [p for p in chosen if p.name[:2] in wanted]
    return [p for p in chosen if not on_demand(p)]


def on_demand(path: Path) -> bool:
    """Whether a notebook runs only when named (``--only NN``): work done now and then, such
    as taking hosts out of the swarm. Its metadata says so (``runbook.on_demand``)."""
    try:
        meta = json.loads(path.read_text()).get("metadata", {})
    except (OSError, ValueError):
        return False
    return bool(meta.get("runbook", {}).get("on_demand"))


def resolve_secrets(p) -> None:
    """Fail now, not halfway through, if a secret cannot be resolved or is unfit."""
    from . import htpasswd
    from . import params as params_mod
    from .errors import SecretError
    from .secrets import Secret

    refs = [(n, getattr(p, n)) for n in params_mod.SECRET_FIELDS]
    refs += [(f"registry_users.{u}", ref) for u, ref in p.registry_users.items()]
    refs += [(f"nodes[{i}].sudo_password", n.sudo_password) for i, n in enumerate(p.nodes)]
    for name, value in refs:
        # The notebooks run in a kernel nobody can type into: asking here would be for
        # nothing, since the kernel asks again and cannot be answered.
        if isinstance(value, Secret) and value.ref == "prompt":
            raise SecretError(
                f"parameter {name!r} is 'prompt', which only a person at a notebook in "
                "JupyterLab can answer; for `runbook run` use env:NAME or file:PATH"
            )
    for value in [getattr(p, n) for n in params_mod.SECRET_FIELDS] + [
        n.sudo_password for n in p.nodes
    ]:
        if isinstance(value, Secret):
            value.reveal()
    for user, ref in p.registry_users.items():
        htpasswd.validate_password(user, ref.reveal())
    if p.portainer_enabled:
        # Imported only here: it brings paramiko, which this process otherwise never needs.
        from .portainer import admin_password

        admin_password(p)


def new_folder(root: Path, name: str) -> Path:
    """``root/name``, made now; ``name-2``, ``-3``… when runs start within the same second."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            folder = root / (name if n == 1 else f"{name}-{n}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as exc:
        raise ParameterError(
            "--out",
            str(root),
            f"cannot make a run folder there ({exc.strerror or exc}); name a folder you can "
            "write to",
            "runs",
        ) from None
    raise ParameterError("--out", str(root), f"holds 999 runs named {name} already", "runs")


def read_report(nb_path: Path) -> dict[str, Any] | None:
    from .steps import REPORT_MIME

    nb = json.loads(nb_path.read_text())
    for cell in reversed(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if REPORT_MIME in data:
                return data[REPORT_MIME]
    return None


def run(
    params_file: str | Path,
    *,
    start: str | None = None,
    only: list[str] | None = None,
    check: bool = False,
    out_root: str | Path = "runs",
    log=print,
) -> RunSummary:
    """Run the notebooks; the summary and the report are written however the run ends."""
    # Started first: the kernel boots and imports the library while the parameters are
    # checked and papermill is imported here.
    env = {**os.environ, PRECONNECT_ENV: str(Path(params_file).resolve())}
    kernel = SharedKernel(str(NOTEBOOKS), env)
    commit = _commit()
    record: dict[str, Any] = {}
    previous = _stop_on_sigterm()
    try:
        return _run(kernel, params_file, start, only, check, out_root, log, record)
    except KeyboardInterrupt as exc:
        if "summary" in record:
            why = str(exc) if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
            record["summary"].stopped = why
        raise
    finally:
        kernel.close()
        if "summary" in record:
            _close(record, commit, log)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """SIGTERM raises :class:`Terminated` in the run, so that its ``finally`` blocks write
    the record; the previous handler, or None where none can be set (not the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):  # noqa: ARG001 (signal handler's signature)
        raise Terminated("stopped by SIGTERM")

    return signal.signal(signal.SIGTERM, terminate)


def _commit() -> subprocess.Popen | None:
    """``git describe`` of the runbook's own checkout, asked in the background (or None)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        return subprocess.Popen(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except OSError:
        return None


def _close(record: dict[str, Any], commit: subprocess.Popen | None, log) -> None:
    """Write summary.json, then wait for the report (the renderer has the notebooks)."""
    summary: RunSummary = record["summary"]
    summary.close(record["began"])
    if commit is not None:
        try:
            out, _ = commit.communicate(timeout=5)
            summary.commit = out.strip() or None if commit.returncode == 0 else None
        except subprocess.TimeoutExpired:
            commit.kill()
    folder = Path(summary.folder)
    (folder / "summary.json").write_text(summary.to_json())
    renderer = record.get("renderer")
    if renderer is None or not renderer.finish():
        # No renderer (the run stopped before the first notebook), or it failed: here then.
        try:
            from . import report

            report.render_run(folder)
        except Exception as exc:  # noqa: BLE001 (the record is written; the page is not)
            log(
                f"the report was not written ({type(exc).__name__}: {exc}); "
                f"`runbook report {folder}` writes it again"
            )
    stopped = summary.interrupted
    if stopped:
        log(f"INTERRUPTED in {stopped.name}: {stopped.error}; report: {folder / 'index.html'}")
    elif summary.stopped:
        log(f"INTERRUPTED between notebooks: {summary.stopped}; report: {folder / 'index.html'}")


# Paths on this machine that a parameters file may give relative to where the runbook
# runs; the notebooks' kernel runs in notebooks/, so they reach it absolute.
LOCAL_PATHS = ("backup_dir", "restore_from")


def local_paths(values: dict[str, Any], cwd: str | None = None) -> dict[str, str]:
    """``LOCAL_PATHS`` given relative, made absolute against ``cwd`` (the current folder)."""
    out = {}
    for name in LOCAL_PATHS:
        value = values.get(name)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            out[name] = os.path.join(cwd or os.getcwd(), value)
    return out


def _run(kernel, params_file, start, only, check, out_root, log, record) -> RunSummary:
    from . import params as params_mod

    values = params_mod.read_yaml(params_file)
    written = json.loads(json.dumps(values, default=str))  # as in the file: references only
    values["check_mode"] = check or bool(values.get("check_mode"))
    values.update(local_paths(values))
    p = params_mod.load(values)
    resolve_secrets(p)
    chosen = select(notebooks(), start, only)
    now = datetime.now(timezone.utc)
    record["began"] = time.monotonic()
    folder = new_folder(
        Path(out_root), f"{now:%Y%m%dT%H%M%SZ}-{re.sub(r'[^A-Za-z0-9.-]', '_', p.host)}"
    )
    kernel.go()  # accepted, and the record has its folder: the kernel may connect now

    summary = RunSummary(
        p.host,
        p.registry,
        now.isoformat(timespec="seconds"),
        p.check_mode,
        str(folder),
        params_file=str(params_file),
        parameters=written,
    )
    # From here on the run leaves its record, however it ends (see run()).
    record["summary"] = summary
    log(f"run folder: {folder}{'  (check mode: nothing will change)' if check else ''}")
    # While the kernel boots: import papermill, and have nbformat build its schema
    # validator (~0.1 s, once) by reading the first notebook.
    import nbformat
    import papermill  # noqa: F401

    if chosen:
        nbformat.read(chosen[0], as_version=4)
    kernel.ready()
    from .report import Renderer

    # Rendering starts with the notebooks, in its own process: see report.Renderer.
    record["renderer"] = Renderer(folder)
    _run_notebooks(chosen, folder, values, summary, kernel, log, record["renderer"])
    return summary


def _outcome(name: str, out: Path, began: float, status=None, error=None) -> NotebookOutcome:
    """A notebook's entry in the summary, from its report (none when it stopped early)."""
    from . import report

    data = read_report(out) if out.exists() else None
    lines = report.notebook_lines(data)
    return NotebookOutcome(
        name,
        status or (data or {}).get("status", "ok"),
        (data or {}).get("changed", 0),
        time.monotonic() - began,
        out.name if out.exists() else None,
        error,
        lines["counts"],
        lines["warnings"],
        lines["steps"],
    )


def _engine() -> str:
    """papermill's nbclient engine, which also saves a notebook that is interrupted.

    The runner has papermill save a notebook only when it ends (``request_save_on_cell_execute``
    off: saving after each cell costs ~0.1 s a notebook); papermill then writes nothing for
    a notebook interrupted by Ctrl-C or SIGTERM. This engine gives the notebook's manager
    the output path when that happens, and the engine's own ``finally`` saves what ran.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            partial = kwargs.pop("save_interrupted_to")
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            except KeyboardInterrupt:
                nb_man.output_path = partial
                raise

    papermill_engines.register("runbook", Engine)
    return "runbook"


def _run_notebooks(chosen, folder, values, summary, kernel: SharedKernel, log, renderer) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    engine = _engine()

    head = {k: getattr(summary, k) for k in ("host", "registry", "started", "check")}
    for i, nb in enumerate(chosen):
        name = nb.stem
        if summary.failed:
            summary.notebooks.append(NotebookOutcome(name, "skipped"))
            continue
        out = folder / nb.name
        began = time.monotonic()
        try:
            kernel.fresh(str(folder.resolve()))
            papermill.execute_notebook(
                str(nb),
                str(out),
                parameters=values,
                cwd=str(nb.parent),
                kernel_name="python3",
                progress_bar=False,
                km=kernel.km,
                # The record is written when the notebook ends, failed or not (and every
                # 30 s during a long cell); saving after every cell costs ~0.1 s a notebook.
                request_save_on_cell_execute=False,
                engine_name=engine,
                save_interrupted_to=str(out),
            )
            error = None
        except PapermillExecutionError as exc:
            error = f"{name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except KeyboardInterrupt as exc:
            # papermill has saved what ran so far; the rest of the run is not done.
            why = str(exc) if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
            outcome = _outcome(name, out, began, "interrupted", f"{name}: {why}")
            summary.notebooks.append(outcome)
            summary.notebooks += [NotebookOutcome(p.stem, "skipped") for p in chosen[i + 1 :]]
            if outcome.output:
                renderer.notebook(asdict(outcome), head)
            raise
        except Exception as exc:  # noqa: BLE001 (the kernel died, a cell timed out...)
            error = f"{name}: {type(exc).__name__}: {exc}"
        outcome = _outcome(name, out, began, "failed" if error else None, error)
        summary.notebooks.append(outcome)
        if outcome.output:
            renderer.notebook(asdict(outcome), head)
        if error:
            log(f"  {name:<22} failed  ({outcome.seconds:.1f} s)\n    {error}")
            continue
        log(
            f"  {name:<22} {outcome.status:<8} {outcome.changed} changed  ({outcome.seconds:.1f} s)"
        )


def main_run(args) -> int:
    """`runbook run`: returns the process exit code."""
    try:
        summary = run(
            args.params, start=args.start, only=args.only, check=args.check, out_root=args.out
        )
    except KeyboardInterrupt as exc:  # recorded and said by run()
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    bad = summary.failed
    changed = sum(n.changed for n in summary.notebooks)
    index = Path(summary.folder) / "index.html"
    if bad:
        print(
            f"FAILED in {bad.name}: {bad.error}\nsee {summary.folder}/{bad.output or ''}"
            f" and the report {index}",
            file=sys.stderr,
        )
        return 1
    verb = "would change" if summary.check else "changed"
    print(f"done: {changed} step(s) {verb}; report: {index}")
    return 0
