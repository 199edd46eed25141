"""The ``runbook`` command: run the notebooks against a host, or rewrite a run's report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import RunbookError

DESCRIPTION = "Turn a Linux host into a Docker Swarm with a private TLS registry, over SSH."
EPILOG = """\
examples:
  runbook run my-host.yaml --check     show what would change, change nothing
  runbook run my-host.yaml             do it; the record goes to runs/<UTC time>-<host>/
  runbook run my-host.yaml --only 06 07
  runbook report runs/20261202T050417Z-10.204.0.2

Open runs/<...>/index.html for a run's report, runs/index.html for every run.
"""


def _epilog() -> str:
    """The examples, and the notebooks that run only when named."""
    from .runner import notebooks, on_demand

    named = [p.stem for p in notebooks() if on_demand(p)]
    if not named:
        return EPILOG
    return EPILOG + "\non demand, only with --only NN: " + ", ".join(named) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="runbook",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the notebooks in order against a host")
    run.add_argument("params", help="parameters file (YAML), e.g. parameters/lab.yaml")
    run.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN")
    run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks")
    run.add_argument("--check", action="store_true", help="show the plan, change nothing")
    run.add_argument("--out", default="runs", help="where run folders go (default: runs)")
    report = sub.add_parser(
        "report",
        help="write a run folder's report (index.html) again",
        description="Write a run folder's index.html, its notebooks' pages and the runs "
        "index above it again (for folders made before reports existed, too).",
    )
    report.add_argument("folder", type=Path, help="a run folder, e.g. runs/<UTC time>-<host>")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # papermill validates notebooks with jsonschema, which imports rfc3987_syntax for one
    # string format nbformat never uses; that import compiles a grammar and costs a second
    # on every run. Without the module, jsonschema skips that format.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    if args.command == "report":
        return _report(args.folder)
    from . import runner

    try:
        return runner.main_run(args)
    except RunbookError as exc:
        print(f"runbook: {exc}", file=sys.stderr)
        return 2


def _report(folder: Path) -> int:
    from . import report

    if not (folder / "summary.json").is_file():
        print(f"runbook: {folder} is not a run folder: it has no summary.json", file=sys.stderr)
        return 2
    print(report.render_run(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
