"""The run as a report: what ``summary.json`` says, and the HTML a person opens first.

A run folder gets ``index.html`` (the host, the outcome, what changed, one row per notebook
with its step lines, the parameters as written, times and version) and one HTML page per
executed notebook, without the code a reader does not need; ``runs/index.html`` lists every
run, newest first. All of it is rendered from templates (``runbook_lib/templates``): the
notebooks by nbconvert's ``lab`` template without its scripts, the indexes by Jinja2. The
pages load nothing from the network.

The first half of this module is pure (canned reports in, summary data out); rendering
imports nbconvert (about 0.4 s), so a run renders in a child process (:class:`Renderer`)
that imports it while the notebooks run and renders each notebook when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
# steps.REPORT_MIME, spelled out: importing steps brings paramiko (0.2 s) into the renderer.
REPORT_MIME = "application/vnd.runbook.report+json"
STEP_STATUSES = ("ok", "changed", "verified", "skipped", "failed")
# Worst first: a run's status is the worst of its notebooks'.
RUN_STATUSES = ("failed", "interrupted", "changed", "ok")
# The parts of a step's result that summary.json keeps (details and diffs stay in the
# notebook, where they are shown in full).
STEP_KEYS = ("name", "status", "reason", "warnings", "actions", "seconds", "dry_run", "host")


# -- the summary's data (pure) --------------------------------------------------------------


def step_line(step: Mapping[str, Any]) -> dict[str, Any]:
    """One step's line for the summary, from a step result (older ones lack warnings)."""
    line = {k: step.get(k) for k in STEP_KEYS}
    line["warnings"] = list(step.get("warnings") or [])
    line["actions"] = list(step.get("actions") or [])
    line["seconds"] = float(step.get("seconds") or 0.0)
    line["dry_run"] = bool(step.get("dry_run"))
    return line


def count(steps: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Steps by status, every status present (``{"ok": 3, "changed": 1, ...}``)."""
    counts = dict.fromkeys(STEP_STATUSES, 0)
    for s in steps:
        counts[s.get("status", "ok")] = counts.get(s.get("status", "ok"), 0) + 1
    return counts


def notebook_lines(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """A notebook's ``steps``, ``counts`` and ``warnings`` from its report (``None``: none).

    Warnings are prefixed with their step's name (``"Swarm: ..."``), as the report has them;
    older reports carry no warnings list, so it is made from the steps.
    """
    if not report:
        return {"steps": [], "counts": count([]), "warnings": []}
    steps = [step_line(s) for s in report.get("steps") or []]
    counts = {**count([]), **(report.get("counts") or count(steps))}
    warnings = report.get("warnings")
    if warnings is None:
        warnings = [f"{s['name']}: {w}" for s in steps for w in s["warnings"]]
    return {"steps": steps, "counts": counts, "warnings": list(warnings)}


def run_status(notebooks: Sequence[Mapping[str, Any]]) -> str:
    """``failed``, ``interrupted``, ``changed`` or ``ok``: the worst of the notebooks'."""
    statuses = {n.get("status") for n in notebooks}
    for status in RUN_STATUSES[:3]:
        if status in statuses:
            return status
    return "ok"


def run_totals(notebooks: Sequence[Mapping[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """The run's step counts, and its warnings prefixed with their notebook's name."""
    counts = count([])
    warnings: list[str] = []
    for n in notebooks:
        for status, k in (n.get("counts") or {}).items():
            counts[status] = counts.get(status, 0) + k
        warnings += [f"{n['name']}: {w}" for w in n.get("warnings") or []]
    return counts, warnings


def headline(summary: Mapping[str, Any]) -> str:
    """One sentence on the outcome, e.g. ``8 changes in 5 notebooks`` or ``failed in 04-swarm``."""
    notebooks = summary.get("notebooks") or []
    status = summary.get("status") or run_status(notebooks)
    check = summary.get("check")
    if status in ("failed", "interrupted"):
        where = next((n["name"] for n in notebooks if n.get("status") == status), "?")
        return f"{status} in {where}"
    changes = sum(n.get("changed") or 0 for n in notebooks)
    if not changes:
        return "nothing to change" if check else "nothing changed: the host was as wanted"
    touched = sum(1 for n in notebooks if n.get("changed"))
    verb = "would change" if check else "changed"
    steps = "step" if changes == 1 else "steps"
    books = "notebook" if touched == 1 else "notebooks"
    return f"{changes} {steps} {verb}, in {touched} {books}"


# -- reading a run folder ---------------------------------------------------------------------


def read_notebook(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """An executed notebook's title (its first heading) and its report (the last one)."""
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    title = None
    report = None
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", ""))
        if title is None and cell.get("cell_type") == "markdown" and source.startswith("# "):
            title = source.splitlines()[0][2:].strip()
        for out in cell.get("outputs", []):
            if REPORT_MIME in out.get("data", {}):
                report = out["data"][REPORT_MIME]
    return title, report


def load_run(folder: Path) -> dict[str, Any]:
    """A run folder's summary, completed for the report: each notebook's title, and for
    folders written before summaries had them, the step lines, counts, warnings and status."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    for n in summary.get("notebooks", []):
        title, report = read_notebook(folder / n["output"]) if n.get("output") else (None, None)
        n["title"] = title or n["name"]
        if "steps" not in n:
            n.update(notebook_lines(report))
        n["html"] = Path(n["output"]).with_suffix(".html").name if n.get("output") else None
    if "status" not in summary:
        summary["status"] = run_status(summary.get("notebooks", []))
    if "counts" not in summary:
        summary["counts"], summary["warnings"] = run_totals(summary.get("notebooks", []))
    summary["name"] = folder.name
    summary["headline"] = headline(summary)
    summary["problem"] = next(
        (n for n in summary["notebooks"] if n.get("status") in ("failed", "interrupted")), None
    )
    return summary


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run folder under ``root`` that has a ``summary.json``, newest first."""
    runs = []
    for folder in sorted(Path(root).iterdir(), reverse=True):
        if not (folder / "summary.json").is_file():
            continue
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except ValueError:
            continue
        summary.setdefault("status", run_status(summary.get("notebooks", [])))
        summary["name"] = folder.name
        summary["headline"] = headline(summary)
        summary["has_index"] = (folder / "index.html").exists()
        summary["changed"] = sum(n.get("changed") or 0 for n in summary.get("notebooks", []))
        runs.append(summary)
    runs.sort(key=lambda r: (r.get("started") or "", r["name"]), reverse=True)
    return runs


# -- HTML ---------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s"


def _when(iso: str | None) -> str:
    """``2026-12-02T05:04:17+00:00`` as ``2026-12-02 05:04:17 UTC``."""
    if not iso:
        return "not recorded"
    return iso.replace("T", " ").replace("+00:00", " UTC")[:23].rstrip()


def _value(value: Any) -> str:
    """A parameter's value as written in YAML (mappings and lists in flow style)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def environment():
    """The Jinja2 environment of the index pages (autoescaped)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([TEMPLATES, TEMPLATES / "runbook"]),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(seconds=_seconds, when=_when, value=_value)
    env.globals.update(STEP_STATUSES=STEP_STATUSES)
    return env


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def exporter():
    """nbconvert's HTML exporter for an executed notebook: the ``lab`` look, no code input,
    no parameters cells, no scripts (see templates/runbook/index.html.j2)."""
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
    from traitlets.config import Config

    class PageExporter(HTMLExporter):
        """HTMLExporter without its final BeautifulSoup pass (nbconvert/exporters/html.py,
        ``from_notebook_node``): it only adds alt texts to images and tab stops to code
        cells, which these pages have neither of, and it re-parses every page whole (the
        lab theme's CSS included), about half of a page's cost."""

        def from_notebook_node(self, nb, resources=None, **kw):  # noqa: ANN001, ANN201
            resources = self._init_resources(resources)
            # Code input is left out of these pages: no highlighting is ever called for.
            self.register_filter("highlight_code", lambda source, **_: source)
            self.register_filter(
                "filter_data_type",
                WidgetsDataTypeFilter(
                    notebook_metadata=self._nb_metadata, parent=self, resources=resources
                ),
            )
            return TemplateExporter.from_notebook_node(self, nb, resources, **kw)

    config = Config()
    # The defaults and papermill's injected values: the index shows the parameters once.
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = {"parameters", "injected-parameters"}
    return PageExporter(
        config=config,
        template_name="runbook",
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def render_notebook(
    ipynb: Path, outcome: Mapping[str, Any], run: Mapping[str, Any], html_exporter=None
) -> Path:
    """Write ``NAME.html`` next to an executed notebook; ``outcome`` is its summary entry."""
    import nbformat

    html_exporter = html_exporter or exporter()
    nb = nbformat.read(ipynb, as_version=4)
    resources = {
        "metadata": {"name": outcome.get("title") or ipynb.stem},
        "runbook": {"notebook": dict(outcome), "run": dict(run)},
    }
    body, _ = html_exporter.from_notebook_node(nb, resources=resources)
    out = ipynb.with_suffix(".html")
    _write(out, body)
    return out


def render_index(folder: Path, summary: Mapping[str, Any] | None = None, env=None) -> Path:
    """Write the run folder's ``index.html`` from its summary."""
    folder = Path(folder)
    summary = summary or load_run(folder)
    files = [f for f in ("ca.crt", "summary.json") if (folder / f).exists()]
    html = (env or environment()).get_template("run.html.j2").render(run=summary, files=files)
    out = folder / "index.html"
    _write(out, html)
    return out


def render_runs(root: Path, env=None) -> Path:
    """Write ``root/index.html``: every run, newest first, with its outcome."""
    root = Path(root)
    html = (env or environment()).get_template("runs.html.j2").render(runs=list_runs(root))
    out = root / "index.html"
    _write(out, html)
    return out


def _run_header(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What a notebook's page says about its run (for the link back)."""
    return {k: summary.get(k) for k in ("host", "registry", "started", "check", "name")}


def render_run(folder: Path) -> Path:
    """(Re)write every HTML page of a run folder and the runs index above it."""
    folder = Path(folder)
    summary = load_run(folder)
    html_exporter = None
    for n in summary["notebooks"]:
        if n.get("output") and (folder / n["output"]).exists():
            html_exporter = html_exporter or exporter()
            render_notebook(folder / n["output"], n, _run_header(summary), html_exporter)
    index = render_index(folder, summary)
    render_runs(folder.parent)
    return index


# -- rendering next to a run ---------------------------------------------------------------


class Renderer:
    """Renders a run's pages in a child process while the run goes on.

    Started with the run, it imports nbconvert while the first notebooks run; the runner
    hands it each executed notebook as it ends (:meth:`notebook`) and, once ``summary.json``
    is written, waits for the index (:meth:`finish`). It runs in its own session, so that a
    Ctrl-C meant for the run leaves it to write the report of the interrupted run, and at a
    lower priority, so that it takes the processor only when the run waits on the host.
    """

    def __init__(self, folder: Path, env: Mapping[str, str] | None = None):
        self.folder = Path(folder)
        self.env = dict(env or os.environ)
        self._proc: subprocess.Popen | None = None

    @property
    def proc(self) -> subprocess.Popen:
        # Started with the first notebook's page, not with the run: the kernel's start and
        # the first notebook are the run's busiest second, and this machine may have two
        # cores, one of them serving the host (the lab's host is this machine).
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "runbook_lib.report", "--follow", str(self.folder)],
                stdin=subprocess.PIPE,
                text=True,
                env=self.env,
                start_new_session=True,
            )
        return self._proc

    def notebook(self, outcome: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        """Render this executed notebook now (``outcome``: its entry in the summary)."""
        self._send({"notebook": dict(outcome), "run": dict(run)})

    def _send(self, message: Mapping[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(message, default=str) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it has stopped; finish() says so

    def finish(self, timeout: float = 120) -> bool:
        """``summary.json`` is written: render the index pages and wait; True if it did."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


def _follow(folder: Path, lines: Iterable[str]) -> None:
    """The child's side of :class:`Renderer`: one JSON line per notebook, then the index."""
    # The imports and the templates' compilation, while the first notebook runs.
    html_exporter = exporter()
    env = environment()
    for template in ("run.html.j2", "runs.html.j2"):
        env.get_template(template)
    for line in lines:
        message = json.loads(line)
        outcome = message["notebook"]
        if outcome.get("output") and (folder / outcome["output"]).exists():
            title, _ = read_notebook(folder / outcome["output"])
            outcome["title"] = title or outcome["name"]
            render_notebook(folder / outcome["output"], outcome, message["run"], html_exporter)
    if (folder / "summary.json").exists():
        render_index(folder, env=env)
        render_runs(folder.parent, env=env)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m runbook_lib.report", description=__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--follow", action="store_true", help="render notebooks named on stdin")
    args = ap.parse_args(argv)
    # See runbook_lib.cli.main: jsonschema's optional grammar costs a second to import.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    if args.follow:
        # Only what the run leaves idle: the run waits for the pages only at its end.
        os.nice(19)
        _follow(args.folder, sys.stdin)
        sys.stdout.flush()
        os._exit(0)  # the pages are written; tearing down nbconvert's modules is not needed
    else:
        print(render_run(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
