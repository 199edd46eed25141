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
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import params as params_mod
from .secrets import Secret
from .steps import REPORT_MIME

NOTEBOOKS = Path(
    os.environ.get("RUNBOOK_NOTEBOOKS", Path(__file__).resolve().parents[1] / "notebooks")
)
RUN_DIR_ENV = "RUNBOOK_RUN_DIR"  # where a notebook may leave files for the run (ca.crt)


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


def _shared_client_class():
    from jupyter_client.asynchronous import AsyncKernelClient

    class SharedClient(AsyncKernelClient):
        """A client that may be started and readied again: the second time is a no-op."""

        _ready = False

        def start_channels(self, *args, **kwargs) -> None:
            if not self.channels_running:
                super().start_channels(*args, **kwargs)

        async def _async_wait_for_ready(self, timeout=None) -> None:
            if not self._ready:
                await super()._async_wait_for_ready(timeout=timeout)
                self._ready = True

        wait_for_ready = _async_wait_for_ready

    return SharedClient


class SharedKernel:
    """One kernel, and one client of it, for every notebook of a run.

    Starting a kernel and importing the library cost about a second per notebook, and
    connecting a client to a kernel a quarter of one; sharing both pays that once, and lets
    the notebooks share the SSH connection too. Before each notebook the kernel's namespace
    and execution count are reset, so every executed notebook reads as if it ran alone. The
    kernel talks over Unix sockets in a private folder: TCP ports on loopback would be open
    to every local user.
    """

    _RESET = "get_ipython().run_line_magic('reset', '-f')\nget_ipython().execution_count = 1"
    _WARM_UP = "import IPython.display, runbook_lib.context, " + ", ".join(
        f"runbook_lib.{m}"
        for m in (
            "preflight",
            "engine",
            "compose",
            "swarm",
            "certs",
            "users",
            "registry",
            "verify",
            "portainer",
        )
    )

    def __init__(self, folder: str, cwd: str):
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync
        from traitlets import default

        shared = self

        class IPCKernelManager(AsyncKernelManager):
            @default("transport")
            def _default_transport(self) -> str:
                return "ipc"

            @default("ip")
            def _default_ip(self) -> str:
                return os.path.join(folder, "kernel")

            def client(self, **kwargs):
                # papermill asks for a client per notebook: hand out the shared one.
                if shared._client is None:
                    shared._client = super().client(**kwargs)
                return shared._client

        self._client = None
        self._run_sync = run_sync
        self.km = IPCKernelManager(kernel_name="python3")
        self.km.client_factory = _shared_client_class()
        # Launches the process and returns; the kernel boots while the caller goes on.
        # No input history: counts restart at 1 for each notebook, which a history
        # database would refuse (and say so in the notebook's output).
        # The library is imported while the kernel boots, in parallel with the caller.
        run_sync(self.km.start_kernel)(
            cwd=cwd,
            extra_arguments=[
                "--HistoryManager.enabled=False",
                f"--IPKernelApp.exec_lines={self._WARM_UP}",
            ],
        )

    def ready(self) -> None:
        """Wait until the kernel answers."""

        async def connect():
            kc = self.km.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=60)

        self._run_sync(connect)()

    def fresh(self, run_dir: str) -> None:
        """Forget the previous notebook's variables; tell the next where the run folder is."""
        code = f"{self._RESET}\nimport os\nos.environ[{RUN_DIR_ENV!r}] = {run_dir!r}\ndel os"
        self._run_sync(self._client.execute_interactive)(
            code, store_history=False, timeout=60, output_hook=lambda msg: None
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.stop_channels()
        self._run_sync(self.km.shutdown_kernel)(now=True)


def notebooks(directory: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in directory.glob("[0-9][0-9]-*.ipynb"))


def select(all_nbs: list[Path], start: str | None, only: list[str] | None) -> list[Path]:
    """The notebooks to run, by number prefix (``--from 04``, ``--only 05 06``)."""
    known = {p.name[:2] for p in all_nbs}
    for n in [start, *(only or [])]:
        if n is not None and n.zfill(2) not in known:
            raise params_mod.ParameterError(
                "notebook", n, "no such notebook number", ", ".join(sorted(known))
            )
    chosen = all_nbs
    if start:
        chosen = [p for p in chosen if p.name[:2] >= start.zfill(2)]
    if only:
        wanted = {n.zfill(2) for n in only}
        chosen = [p for p in chosen if p.name[:2] in wanted]
    return chosen


def resolve_secrets(p: params_mod.Params) -> None:
    """Fail now, not halfway through, if a secret cannot be resolved or is unfit."""
    from . import htpasswd
    from .portainer import admin_password

    for name in params_mod.SECRET_FIELDS:
        value = getattr(p, name)
        if isinstance(value, Secret):
            value.reveal()
    for user, ref in p.registry_users.items():
        htpasswd.validate_password(user, ref.reveal())
    if p.portainer_enabled:
        admin_password(p)


def read_report(nb_path: Path) -> dict[str, Any] | None:
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
    with tempfile.TemporaryDirectory(prefix="runbook-kernel-") as private:
        # Started first: the kernel boots and imports the library while the parameters
        # are checked and papermill is imported here.
        kernel = SharedKernel(private, str(NOTEBOOKS))
        try:
            return _run(kernel, params_file, start, only, check, out_root, log)
        finally:
            kernel.close()


def _run(kernel, params_file, start, only, check, out_root, log) -> RunSummary:
    values = params_mod.read_yaml(params_file)
    values["check_mode"] = check or bool(values.get("check_mode"))
    p = params_mod.load(values)
    resolve_secrets(p)
    chosen = select(notebooks(), start, only)

    now = datetime.now(timezone.utc)
    folder = Path(out_root) / f"{now:%Y%m%dT%H%M%SZ}-{re.sub(r'[^A-Za-z0-9.-]', '_', p.host)}"
    folder.mkdir(parents=True, exist_ok=False)
    summary = RunSummary(
        p.host, p.registry, now.isoformat(timespec="seconds"), p.check_mode, str(folder)
    )
    log(f"run folder: {folder}{'  (check mode: nothing will change)' if check else ''}")
    import papermill  # noqa: F401 (imported while the kernel boots)

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
        kernel.fresh(str(folder.resolve()))
        try:
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
        except PapermillExecutionError as exc:
            failed = True
            error = f"{name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
            summary.notebooks.append(
                NotebookOutcome(name, "failed", 0, time.monotonic() - began, out.name, error)
            )
            log(f"  {name:<22} failed  ({time.monotonic() - began:.1f} s)\n    {error}")
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
            f"FAILED in {bad.name}: {bad.error}\nsee {summary.folder}/{bad.output}", file=sys.stderr
        )
        return 1
    print(f"done: {changed} changed step(s); executed notebooks in {summary.folder}")
    return 0
