"""Benchmark: the work on several hosts runs in parallel.

    .venv/bin/python benchmarks/nodes.py             # 3 rounds
    .venv/bin/python benchmarks/nodes.py --rounds 1

Against the lab's nodes (tests/lab/nodes.sh), each round:
- the install from fresh hosts (notebooks 01 and 02): node1 alone, then all three;
- the swarm from "Docker installed, no swarm" (the whole runbook): node1 alone, then all
  three (joined, every node pulling, a service on every node).
Prints medians and the ratios three/one; asserts nothing (targets: install <= 1.5, swarm
<= 1.3). Leaves the nodes up, as the last run made them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NODES = ROOT / "tests/lab/nodes.sh"
PARAMS = ROOT / "parameters/lab-nodes.yaml"
LAB = Path("/var/lib/runbook-lab/client")
ADDRESSES = ("10.203.0.11", "10.203.0.12", "10.203.0.13")

# What the runbook made on a node, gone again: "Docker installed, no swarm".
UNDO = """
docker swarm leave --force >/dev/null 2>&1 || true
docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true
docker volume prune -f >/dev/null 2>&1 || true
docker image ls -q 10.203.0.11:5000/hello-world | xargs -r docker image rm -f >/dev/null 2>&1 || true
rm -rf /home/docker /etc/docker/certs.d/10.203.0.11:5000
"""


def sh(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(argv)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def fresh_nodes() -> None:
    sh("bash", str(NODES), "reset")
    sh("bash", str(NODES), "up")


def no_swarm() -> None:
    for address in ADDRESSES:
        sh(
            "ssh", "-F", "none", "-i", str(LAB / "id_ed25519"), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={LAB / 'known_hosts'}", f"root@{address}", UNDO,
        )  # fmt: skip


def timed(params: Path, out: Path, *args: str) -> float:
    start = time.monotonic()
    sh(str(ROOT / ".venv/bin/runbook"), "run", str(params), "--out", str(out), *args)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    rounds = ap.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        alone = out / "alone.yaml"
        alone.write_text(yaml.safe_dump({**yaml.safe_load(PARAMS.read_text()), "nodes": []}))
        install1, install3, swarm1, swarm3 = [], [], [], []
        for i in range(rounds):
            fresh_nodes()
            install1.append(timed(alone, out, "--only", "01", "02"))
            fresh_nodes()
            install3.append(timed(PARAMS, out, "--only", "01", "02"))
            no_swarm()
            swarm1.append(timed(alone, out))
            no_swarm()
            swarm3.append(timed(PARAMS, out))
            print(
                f"round {i + 1}: install {install1[-1]:.1f} s / {install3[-1]:.1f} s, "
                f"swarm {swarm1[-1]:.1f} s / {swarm3[-1]:.1f} s (one host / three)"
            )
    i1, i3 = statistics.median(install1), statistics.median(install3)
    s1, s3 = statistics.median(swarm1), statistics.median(swarm3)
    print(
        f"\ninstall from fresh hosts   one {i1:6.1f} s   three {i3:6.1f} s   ratio {i3 / i1:.2f}  (target <= 1.5)"
    )
    print(
        f"swarm from Docker installed one {s1:6.1f} s   three {s3:6.1f} s   ratio {s3 / s1:.2f}  (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
