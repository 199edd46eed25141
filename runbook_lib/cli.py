"""Run the swarm registry runbook's notebooks against a host, headless."""

from __future__ import annotations

import argparse
import sys

from .errors import RunbookError


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="runbook", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the notebooks in order against a host")
    run.add_argument("params", help="parameters file (YAML), e.g. parameters/lab.yaml")
    run.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN")
    run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks")
    run.add_argument("--check", action="store_true", help="show the plan, change nothing")
    run.add_argument("--out", default="runs", help="where run folders go (default: runs)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # papermill validates notebooks with jsonschema, which imports rfc3987_syntax for one
    # string format nbformat never uses; that import compiles a grammar and costs a second
    # on every run. Without the module, jsonschema skips that format.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from . import runner

    try:
        return runner.main_run(args)
    except RunbookError as exc:
        print(f"runbook: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
