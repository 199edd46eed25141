"""Benchmarks against the local lab: the runbook next to a plain script doing the same work.

    .venv/bin/python benchmarks/run.py            # 5 alternating rounds
    .venv/bin/python benchmarks/run.py --quick    # 1 round, to prove it works (CI)

Each round, from "Docker installed, no swarm" (tests/lab/reset.sh): (1) the floor, a plain
bash script over one SSH session (benchmarks/floor.sh); (2) `runbook run` on the same fresh
state; (3) `runbook run` again, with nothing to do. Also: the fixed cost of a notebook (its
time less its steps' time), SSH connections per run, key generation per type and login +
push + pull time per bcrypt cost. Prints medians and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LAB = Path(os.environ.get("LAB_DIR", "/var/lib/runbook-lab"))
PARAMS = ROOT / "parameters/lab-local.yaml"
SSHD_LOG = LAB / "sshd/sshd.log"


def sh(*argv: str, stdin: str | None = None) -> str:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(argv)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def reset() -> None:
    sh("bash", str(ROOT / "tests/lab/reset.sh"))


def accepted() -> int:
    return SSHD_LOG.read_text().count("Accepted publickey") if SSHD_LOG.exists() else 0


def floor() -> float:
    script = f"PW={secrets.token_hex(12)}\n" + (ROOT / "benchmarks/floor.sh").read_text()
    ssh = [
        "ssh",
        "-F",
        "none",
        "-i",
        str(LAB / "client/id_ed25519"),
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={LAB / 'client/known_hosts'}",
        "-p",
        "2222",
        "root@127.0.0.1",
    ]
    start = time.monotonic()
    sh(*ssh, "bash", "-s", stdin=script)
    return time.monotonic() - start


def runbook(out: Path) -> tuple[float, dict]:
    before = accepted()
    start = time.monotonic()
    sh(str(ROOT / ".venv/bin/runbook"), "run", str(PARAMS), "--out", str(out))
    took = time.monotonic() - start
    # The run's folder (runs/index.html, the list of all runs, sits beside it).
    folder = sorted(p for p in out.iterdir() if p.is_dir())[-1]
    summary = json.loads((folder / "summary.json").read_text())
    fixed = []
    for nb in summary["notebooks"]:
        report = _report(folder / nb["output"])
        fixed.append(nb["seconds"] - sum(s["seconds"] for s in report["steps"]))
    return took, {"connections": accepted() - before, "fixed": statistics.median(fixed)}


def _report(path: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from runbook_lib.runner import read_report

    return read_report(path) or {"steps": []}


def key_generation() -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from runbook_lib import tls

    out = {}
    for kind, size in (("ecdsa", 256), ("ecdsa", 384), ("rsa", 2048), ("rsa", 4096)):
        times = []
        for _ in range(3):
            start = time.monotonic()
            tls.generate_key(kind, size)
            times.append(time.monotonic() - start)
        out[f"{kind} {size}"] = statistics.median(times)
    return out


def bcrypt_costs(out: Path, costs=(5, 10, 12)) -> dict[int, float]:
    """login + push + pull of hello-world against the lab registry, per bcrypt cost.

    The runbook itself sets each cost (a new password forces a new hash, and notebook 07
    rolls the registry onto it); then one login, push and pull is timed on the host."""
    out_params = out / "cost.yaml"
    result = {}
    for cost in costs:
        pw = secrets.token_hex(12)
        os.environ["RB_BENCH_PASSWORD"] = pw
        values = yaml.safe_load(PARAMS.read_text())
        values.update(registry_bcrypt_cost=cost, registry_users={"admin": "env:RB_BENCH_PASSWORD"})
        out_params.write_text(yaml.safe_dump(values))
        sh(
            str(ROOT / ".venv/bin/runbook"),
            "run",
            str(out_params),
            "--only",
            "06",
            "07",
            "--out",
            str(out),
        )
        script = """
        set -e
        export DOCKER_CONFIG=$(mktemp -d)
        trap 'rm -rf "$DOCKER_CONFIG"' EXIT
        docker login -u admin --password-stdin localhost:5000 >/dev/null
        docker push localhost:5000/hello-world >/dev/null
        docker image rm localhost:5000/hello-world >/dev/null
        docker pull localhost:5000/hello-world >/dev/null
        """
        start = time.monotonic()
        sh("bash", "-c", script, stdin=pw)
        result[cost] = time.monotonic() - start
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one round, no extras")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    floors, fresh, noop, conns, fixed = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        # Not timed: the first run after an install compiles Python's bytecode (~1 s).
        runbook(out)
        for i in range(rounds):
            reset()
            floors.append(floor())
            reset()
            took, info = runbook(out)
            fresh.append(took)
            conns.append(info["connections"])
            took, info = runbook(out)
            noop.append(took)
            fixed.append(info["fixed"])
            print(
                f"round {i + 1}: floor {floors[-1]:.1f} s, run {fresh[-1]:.1f} s, no-op {noop[-1]:.1f} s"
            )

    f, r, n = statistics.median(floors), statistics.median(fresh), statistics.median(noop)
    print(f"\nfloor (plain script)        {f:6.1f} s")
    print(
        f"runbook run, fresh          {r:6.1f} s   ratio run/floor   {r / f:.2f}  (target <= 1.25)"
    )
    print(
        f"runbook run, nothing to do  {n:6.1f} s   ratio no-op/floor {n / f:.2f}  (target <= 0.50)"
    )
    if rounds > 1:
        # The floor varies with Docker's start of the registry: show the spread too.
        per_round = [(r / f, n / f) for f, r, n in zip(floors, fresh, noop, strict=True)]
        lo, hi = min(x for x, _ in per_round), max(x for x, _ in per_round)
        lo_n, hi_n = min(y for _, y in per_round), max(y for _, y in per_round)
        print(f"  per round: run/floor {lo:.2f} to {hi:.2f}, no-op/floor {lo_n:.2f} to {hi_n:.2f}")
    print(f"fixed cost per notebook     {statistics.median(fixed):6.2f} s   (target < 1 s)")
    print(f"SSH connections per run     {statistics.median(conns):6.0f}")
    if args.quick:
        print(
            "(one round: its ratios swing widely with how fast Docker starts the floor's "
            "registry; benchmarks/README.md has five-round medians)"
        )
        return
    print("\nkey generation (median of 3)")
    for kind, secs in key_generation().items():
        print(f"  {kind:<10} {secs * 1000:8.1f} ms")
    print("\nlogin + push + pull, per bcrypt cost")
    with tempfile.TemporaryDirectory() as tmp:
        for cost, secs in bcrypt_costs(Path(tmp)).items():
            print(f"  cost {cost:<3} {secs:6.2f} s")
    # Leave the lab as the runbook would: its own users again.
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                str(ROOT / ".venv/bin/runbook"),
                "run",
                str(PARAMS),
                "--only",
                "06",
                "07",
                "--out",
                tmp,
            ],
            capture_output=True,
        )


if __name__ == "__main__":
    main()
