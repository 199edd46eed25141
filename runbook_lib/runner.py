"""The run driver: execute the notebooks in order with papermill, keep each as a record.

Each run gets a folder ``runs/<UTC time>-<host>/`` with one executed notebook per section and
``summary.json``. The run stops at the first failing notebook; the executed copy of that
notebook shows the failing cell (papermill marks it), and the error names notebook, cell
and error. Parameters are validated, and secret references resolved, before anything runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ParameterError
from .kernel import PRECONNECT_ENV, SharedKernel

# Light imports only up to here: the kernel is started before the library's heavier parts
# (pydantic, paramiko, papermill) load in this process; see runbook_lib.kernel.
NOTEBOOKS = Path(
    os.environ.get("RUNBOOK_NOTEBOOKS", Path(__file__).resolve().parents[1] / "notebooks")
)


@dataclass
class NotebookOutcome:
    name: str
    status: str  # ok, changed, failed, skipped
    changed: int = 0
    seconds: float = 0.0
    output: str | None = None
    error: str | None = None


@dataclass
class RunSummary:
    host: str
    registry: str
    started: str
    check: bool
    folder: str
    notebooks: list[NotebookOutcome] = field(default_factory=list)

    @property
    def failed(self) -> NotebookOutcome | None:
        return next((n for n in self.notebooks if n.status == "failed"), None)

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
        chosen = [p for p in chosen if p.name[:2] in wanted]
    return chosen


def resolve_secrets(p) -> None:
    """Fail now, not halfway through, if a secret cannot be resolved or is unfit."""
    from . import htpasswd
    from . import params as params_mod
    from .secrets import Secret

    for name in params_mod.SECRET_FIELDS:
        value = getattr(p, name)
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
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = root / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{root}: too many runs named {name}")


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
    # Started first: the kernel boots and imports the library while the parameters are
    # checked and papermill is imported here.
    env = {**os.environ, PRECONNECT_ENV: str(Path(params_file).resolve())}
    kernel = SharedKernel(str(NOTEBOOKS), env)
    try:
        return _run(kernel, params_file, start, only, check, out_root, log)
    finally:
        kernel.close()


def _run(kernel, params_file, start, only, check, out_root, log) -> RunSummary:
    from . import params as params_mod

    values = params_mod.read_yaml(params_file)
    values["check_mode"] = check or bool(values.get("check_mode"))
    p = params_mod.load(values)
    resolve_secrets(p)
    chosen = select(notebooks(), start, only)
    kernel.go()  # accepted: the kernel may connect to the host now

    now = datetime.now(timezone.utc)
    folder = new_folder(
        Path(out_root), f"{now:%Y%m%dT%H%M%SZ}-{re.sub(r'[^A-Za-z0-9.-]', '_', p.host)}"
    )
    summary = RunSummary(
        p.host, p.registry, now.isoformat(timespec="seconds"), p.check_mode, str(folder)
    )
    log(f"run folder: {folder}{'  (check mode: nothing will change)' if check else ''}")
    # While the kernel boots: import papermill, and have nbformat build its schema
    # validator (~0.1 s, once) by reading the first notebook.
    import nbformat
    import papermill  # noqa: F401

    if chosen:
        nbformat.read(chosen[0], as_version=4)
    kernel.ready()
    _run_notebooks(chosen, folder, values, summary, kernel, log)
    (folder / "summary.json").write_text(summary.to_json())
    return summary


def _run_notebooks(chosen, folder, values, summary, kernel: SharedKernel, log) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    failed = False
    for nb in chosen:
        name = nb.stem
        if failed:
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
            )
            error = None
        except PapermillExecutionError as exc:
            error = f"{name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # noqa: BLE001 (the kernel died, a cell timed out...)
            error = f"{name}: {type(exc).__name__}: {exc}"
        if error:
            failed = True
            took = time.monotonic() - began
            written = out.name if out.exists() else None
            summary.notebooks.append(NotebookOutcome(name, "failed", 0, took, written, error))
            log(f"  {name:<22} failed  ({took:.1f} s)\n    {error}")
            continue
        report = read_report(out) or {"status": "ok", "changed": 0}
        outcome = NotebookOutcome(
            name, report["status"], report["changed"], time.monotonic() - began, out.name
        )
        summary.notebooks.append(outcome)
        log(
            f"  {name:<22} {outcome.status:<8} {outcome.changed} changed  ({outcome.seconds:.1f} s)"
        )


def main_run(args) -> int:
    """`runbook run`: returns the process exit code."""
    summary = run(
        args.params, start=args.start, only=args.only, check=args.check, out_root=args.out
    )
    bad = summary.failed
    changed = sum(n.changed for n in summary.notebooks)
    if bad:
        print(
            f"FAILED in {bad.name}: {bad.error}\nsee {summary.folder}/{bad.output or ''}",
            file=sys.stderr,
        )
        return 1
    print(f"done: {changed} changed step(s); executed notebooks in {summary.folder}")
    return 0
