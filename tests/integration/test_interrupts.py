"""A run stopped in the middle of a step that changes the host, then resumed with `--from`.

The run is the operator's command (`runbook run`), stopped with SIGTERM at the moment the
host starts to change: when 05 writes the new certificate, when 07 deploys the registry's
new stack. The run must leave its record, the registry that was serving must still serve
what was pushed, and `runbook run --from NN` must finish the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.test_faults import (  # noqa: F401 (built: a fixture)
    PARAMS,
    built,
    keep_image,
    served,
    sh,
)

pytestmark = pytest.mark.lab
CERT = "/home/docker/certs/localhost.crt"


def cert_written() -> str:
    st = os.stat(CERT)
    return f"{st.st_ino} {st.st_mtime_ns}"


def registry_deployed() -> str:
    """The stack digest the registry service was last deployed from: it changes when 07
    deploys a new stack, and only then (the service's own version also moves while an
    earlier update completes; a `docker stack deploy` process is too short to be seen
    reliably on a busy machine)."""
    return sh(
        "docker service inspect manager_registry "
        "--format '{{index .Spec.Labels \"runbook.stack-digest\"}}'"
    ).strip()


def runbook(params: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook_lib.cli", "run", str(params), "--out", str(out), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_when_changed(proc: subprocess.Popen, probe, timeout: float = 120) -> str:
    """SIGTERM the run as soon as ``probe`` reads something else; its output."""
    before, deadline = probe(), time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if probe() != before:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.002)
    out, _ = proc.communicate(timeout=120)
    return out


@pytest.mark.parametrize(
    ("notebook", "probe", "name"),
    [("05", cert_written, "127.0.0.4"), ("07", registry_deployed, "127.0.0.5")],
    ids=["05", "07"],
)
def test_a_run_stopped_inside_a_step_is_resumed_with_from(built, tmp_path, notebook, probe, name):  # noqa: F811
    kept = keep_image()
    values = yaml.safe_load(PARAMS.read_text())
    renamed = tmp_path / "renamed.yaml"  # a name of its own: a new certificate, a new deploy
    renamed.write_text(yaml.safe_dump({**values, "registry_names": ["127.0.0.1", name]}))
    out = tmp_path / "runs"
    try:
        first = runbook(renamed, out, "--only", "05", "06", "07")
        said = stop_when_changed(first, probe)
        assert first.returncode == 128 + signal.SIGTERM, said
        (folder,) = [d for d in out.iterdir() if d.is_dir()]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "interrupted", summary["status"]
        stopped = [n["name"][:2] for n in summary["notebooks"] if n["status"] == "interrupted"]
        assert stopped == [notebook], summary["notebooks"]
        assert served(kept), "what was pushed is not served after the stop"

        resumed = runbook(renamed, out, "--from", notebook)
        said, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, said
        assert served(kept)
    finally:
        back = runbook(PARAMS, tmp_path / "back", "--only", "05", "07")
        said, _ = back.communicate(timeout=300)
        assert back.returncode == 0, said
    assert served(kept)
