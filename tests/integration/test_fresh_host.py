"""The whole runbook on the lab's fresh Debian host, which starts without Docker.

One host, one story, each stage a fixture that needs the one before it (so any test run
alone brings the host to its stage):

1. ``--check`` on the new host: every notebook says what it would do, nothing changes.
2. Preflight refuses an old OS, a 32-bit architecture and low disk, in 01, and nothing
   changes; the host is restored after each.
3. A first run interrupted (SIGTERM) while dpkg unpacks Docker's packages, its apt and dpkg
   then killed on the host as a host going down would: the run leaves its record, and the
   next run finishes dpkg's work, installs Docker and runs a container.
4. ``--check`` with Docker running and no swarm yet: 04 to 07 would change, nothing does.
5. The first whole run makes the swarm, deploys the registry and verifies a push and pull;
   a second, as a user with password-less sudo, changes nothing.

A host with work to do is what makes the check-mode tests able to fail: a runbook that
ignored check mode would install Docker in stage 1 and make the swarm in stage 4.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from runbook_lib import runner
from runbook_lib.hosts import port_open
from tests.conftest import CLIENT, ROOT, lab_missing

pytestmark = pytest.mark.fresh
FRESH = ROOT / "tests/lab/fresh-host.sh"
PARAMS = ROOT / "parameters/lab.yaml"
ADDRESS, NETNS = "10.204.0.2", "runbook-fresh"
NOTEBOOKS = [p.stem for p in runner.select(runner.notebooks(), None, None)]  # a whole run
quiet = {"log": lambda *_: None}


def on_host(script: str, *, port: int = 22, known_hosts: Path | None = None) -> str:
    """Run a shell script as root on the fresh host with OpenSSH (not the runbook's code)."""
    r = subprocess.run(
        [
            *("ssh", "-F", "none", "-p", str(port), "-i", str(CLIENT / "id_ed25519")),
            *("-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"),
            *("-o", f"UserKnownHostsFile={known_hosts or CLIENT / 'known_hosts'}"),
            *("-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"),
            f"root@{ADDRESS}",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"on the fresh host: {script}\n{r.stdout}\n{r.stderr}"
    return r.stdout


# What the runbook could change: packages, dpkg's journal, apt's lists, the files it
# writes (content, mode, owner), the engine, the swarm and what runs in it, the firewall.
SNAPSHOT = r"""
echo '== packages'; dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n'
echo '== dpkg journal'; ls /var/lib/dpkg/updates
echo '== apt lists'; ls /var/lib/apt/lists
for d in /etc/apt /etc/docker /home/docker /etc/init.d /etc/rc2.d; do
  echo "== $d"
  test -e "$d" || { echo missing; continue; }
  find "$d" -printf '%p %y %m %u:%g %l\n' | sort
  find "$d" -type f -exec sha256sum {} + | sort
done
echo '== /var/lib/docker'; test -e /var/lib/docker && echo exists
echo '== processes'; pgrep -x 'dockerd|containerd|apt-get|dpkg' | xargs -r ps -o comm= -p | sort
echo '== docker'
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker info --format 'swarm {{.Swarm.LocalNodeState}}'
  docker service ls --format '{{.Name}} {{.Image}} {{.Replicas}}' 2>/dev/null
  docker secret ls --format '{{.Name}}' 2>/dev/null
  docker network ls --format '{{.Name}} {{.Driver}}'
  docker ps -a --format '{{.Image}} {{.Names}}'
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}}'
  docker volume ls -q
fi
echo '== firewall'; iptables -S 2>/dev/null
true
"""


def snapshot() -> str:
    return on_host(SNAPSHOT)


def steps(summary: runner.RunSummary) -> dict[str, dict]:
    return {s["name"]: s for n in summary.notebooks for s in n.steps}


def statuses(summary: runner.RunSummary) -> dict[str, str]:
    return {n.name: n.status for n in summary.notebooks}


def host_processes() -> list[list[str]]:
    """The argv of every process in the fresh host, seen from this machine."""
    pids = subprocess.run(
        ["ip", "netns", "pids", NETNS], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if argv:
            found.append([pid, *argv])
    return found


# -- the stages ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_host(tmp_path_factory) -> Path:
    """A fresh host without Docker (reset, then booted); the folder for the runs' records."""
    if os.geteuid() != 0:
        lab_missing(
            "the fresh host needs root: tests/lab/fresh-host.sh boots it in a network "
            "namespace (run the lab tests as root)"
        )
    reset = subprocess.run(["bash", str(FRESH), "reset"], capture_output=True, text=True)
    up = subprocess.run(["bash", str(FRESH), "up"], capture_output=True, text=True)
    if up.returncode != 0 or not port_open(ADDRESS, 22, 2.0):
        pytest.fail(f"the fresh host did not come up:\n{reset.stderr}\n{up.stdout}\n{up.stderr}")
    return tmp_path_factory.mktemp("fresh")


@pytest.fixture(scope="module")
def new_host_check(fresh_host):
    before = snapshot()
    summary = runner.run(PARAMS, check=True, out_root=fresh_host / "runs", **quiet)
    return summary, before, snapshot()


OLD_OS = """PRETTY_NAME="Debian GNU/Linux 10 (buster)"
NAME="Debian GNU/Linux"
VERSION_ID="10"
VERSION="10 (buster)"
VERSION_CODENAME=buster
ID=debian
"""


@contextmanager
def old_os():
    """Debian 10's os-release bind-mounted over the host's, for the length of the block."""
    on_host(
        f"cat >/run/os-release-10 <<'EOF'\n{OLD_OS}EOF\nmount --bind /run/os-release-10 /etc/os-release"
    )
    try:
        yield {}
    finally:
        on_host("umount /etc/os-release; rm -f /run/os-release-10")
    assert 'VERSION_ID="12"' in on_host("cat /etc/os-release")


@contextmanager
def low_disk():
    """/var on a 1 GiB tmpfs holding a copy of it (df then reports ~1 GiB free there, as
    preflight measures: `df -Pk / /var`); the host's own /var again afterwards."""
    on_host(
        "mkdir -p /run/lowvar && mount -t tmpfs -o size=1g,mode=755 lowvar /run/lowvar && "
        "cp -a /var/. /run/lowvar/ && mount --move /run/lowvar /var"
    )
    try:
        yield {}
    finally:
        on_host("umount /var || umount -l /var; rmdir /run/lowvar")
    assert "lowvar" not in on_host("cat /proc/mounts")


@contextmanager
def i686(tmp: Path):
    """A second sshd on port 2200 in the 32-bit personality (setarch i686): what runs
    through it sees `uname -m` i686, as on a 32-bit x86 system."""
    known = tmp / "known_hosts_2200"
    key = (CLIENT / "known_hosts").read_text().splitlines()
    known.write_text(
        "".join(
            f"[{ADDRESS}]:2200 {line.split(None, 1)[1]}\n"
            for line in key
            if line.startswith(ADDRESS + " ")
        )
    )
    on_host("setarch i686 /usr/sbin/sshd -p 2200 -o PidFile=/run/sshd-i686.pid")
    try:
        assert on_host("uname -m", port=2200, known_hosts=known).strip() == "i686"
        yield {"ssh_port": 2200, "known_hosts": str(known)}
    finally:
        on_host("kill $(cat /run/sshd-i686.pid)")


# Each refusal: what the host is made to be, and what 01's error must say (what is wrong,
# and what is needed).
REFUSALS = {
    "old OS": (
        lambda tmp: old_os(),
        [r"Debian GNU/Linux 10 \(buster\) is too old", r"at least version 11 is needed"],
    ),
    "32-bit architecture": (
        i686,
        [r"architecture i686 is not supported", r"x86_64, aarch64"],
    ),
    "low disk": (
        lambda tmp: low_disk(),
        [r"only (0\.\d|1\.0) GiB free on /var", r"at least 2 GiB"],
    ),
}


@pytest.fixture(scope="module")
def refused(new_host_check, fresh_host):
    """Each refusal's run, and the host before and after it (taken before it is restored)."""
    outcomes = {}
    for name, (make, _) in REFUSALS.items():
        before = snapshot()
        with make(fresh_host) as changes:
            params = fresh_host / f"{name.replace(' ', '-')}.yaml"
            params.write_text(yaml.safe_dump({**yaml.safe_load(PARAMS.read_text()), **changes}))
            summary = runner.run(params, out_root=fresh_host / "refused", **quiet)
            outcomes[name] = summary, before, snapshot()
    return outcomes


def interrupt_while_dpkg_unpacks(out: Path) -> tuple[int, str, float]:
    """Start `runbook run` and stop it with SIGTERM once dpkg unpacks a package on the
    host; its exit code, its output and when it was interrupted. (Not SIGINT: a shell
    starts a background job with SIGINT ignored, and Python keeps it ignored.)"""
    began = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "runbook_lib.cli", "run", str(PARAMS), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        while run.poll() is None and time.monotonic() - began < 600:
            if any(p[1].endswith("dpkg") and "--unpack" in p[2:] for p in host_processes()):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"dpkg never unpacked a package:\n{run.communicate()[0]}")
        at = time.monotonic() - began
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=120)[0]
    finally:
        if run.poll() is None:
            run.kill()
    return run.returncode, output, at


def kill_apt_on_host() -> list[str]:
    """What a host going down does to an install: apt stopped, then dpkg killed mid-work
    (the runbook leaves the apt it started running when a run is interrupted)."""
    killed = []
    for _ in range(50):
        procs = [p for p in host_processes() if Path(p[1]).name in ("apt-get", "dpkg", "dpkg-deb")]
        if not procs:
            return killed
        apt = [int(p[0]) for p in procs if Path(p[1]).name == "apt-get"]
        for pid in apt:  # frozen first, so that it starts no other dpkg
            os.kill(pid, signal.SIGSTOP)
        for p in sorted(procs, key=lambda p: Path(p[1]).name == "apt-get"):
            try:
                os.kill(int(p[0]), signal.SIGKILL)
                killed.append(" ".join(p[1:]))
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    pytest.fail(f"apt or dpkg still runs on the host: {procs}")


@pytest.fixture(scope="module")
def interrupted(refused, fresh_host):
    """The interrupted first run (exit code, output, its summary.json) and the next run."""
    out = fresh_host / "interrupted"
    code, output, _ = interrupt_while_dpkg_unpacks(out)
    killed = kill_apt_on_host()
    journal = on_host("ls /var/lib/dpkg/updates")
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((folder / "summary.json").read_text())
    again = runner.run(PARAMS, only=["01", "02"], out_root=fresh_host / "runs", **quiet)
    return code, output, record, killed, journal, again


@pytest.fixture(scope="module")
def engine_check(interrupted, fresh_host):
    before = snapshot()
    summary = runner.run(PARAMS, check=True, out_root=fresh_host / "runs", **quiet)
    return summary, before, snapshot()


@pytest.fixture(scope="module")
def fresh_runs(engine_check, fresh_host):
    params = yaml.safe_load(PARAMS.read_text())
    as_nopass = fresh_host / "nopass.yaml"
    as_nopass.write_text(yaml.safe_dump({**params, "ssh_user": "nopass"}))
    first = runner.run(PARAMS, out_root=fresh_host / "runs", **quiet)
    second = runner.run(as_nopass, out_root=fresh_host / "runs", **quiet)
    return first, second


# -- 1. check mode on a host with everything to do -------------------------------------------


def test_check_on_a_new_host_says_what_it_would_do_and_changes_nothing(new_host_check):
    summary, before, after = new_host_check
    assert summary.failed is None, summary.failed
    assert summary.check and summary.status == "changed"
    assert statuses(summary) == {
        "01-preflight": "ok",
        "02-docker-engine": "changed",
        "03-compose": "skipped",  # Debian 12 has no Compose v2 package; not needed
        "04-swarm": "changed",
        "05-tls": "changed",
        "06-users": "changed",
        "07-registry": "changed",
        "08-verify": "skipped",  # check_only: a push is a change
        "09-portainer": "changed",  # the secret, the stack file, the deploy
        "10-nodes": "skipped",  # no nodes
        "18-seed": "skipped",  # no seed_images
        "19-mirror": "skipped",  # not enabled
    }
    s = steps(summary)
    assert all(step["dry_run"] for step in s.values())
    assert s["Docker packages"]["status"] == "changed"
    assert s["Docker packages"]["actions"][-1].endswith("install --allow-downgrades docker.io")
    assert s["Docker service"]["actions"] == ["service docker start"]
    # The dry-run branches of 04 and 07 (Docker is not there to ask) and check_only skips.
    assert (s["Swarm"]["status"], s["Swarm"]["reason"]) == (
        "changed",
        "to do once Docker runs (notebook 02)",
    )
    for name in ("Stack file", "Registry service"):
        assert s[name]["status"] == "changed"
        assert s[name]["reason"].startswith("to do once notebooks 05 and 06 ran"), s[name]
    for name in ("Run a container", "Registry answers", "Push", "Pull", "Catalog"):
        assert (s[name]["status"], s[name]["reason"]) == ("skipped", "check mode: not checked")
    assert after == before


# -- 2. preflight's refusals -------------------------------------------------------------------


@pytest.mark.parametrize("case", list(REFUSALS))
def test_preflight_refuses_the_host_and_changes_nothing(refused, case):
    summary, before, after = refused[case]
    failed = summary.failed
    assert failed is not None and failed.name == "01-preflight", statuses(summary)
    for needed in REFUSALS[case][1]:
        assert re.search(needed, failed.error), failed.error
    assert statuses(summary) == {
        name: "failed" if name == "01-preflight" else "skipped" for name in NOTEBOOKS
    }
    assert after == before


# -- 3. an install interrupted on the host ---------------------------------------------------


def test_interrupted_install_leaves_its_record_and_the_next_run_recovers(interrupted):
    code, output, record, killed, journal, again = interrupted
    assert code == 128 + signal.SIGTERM, output
    assert "INTERRUPTED in 02-docker-engine" in output
    assert record["status"] == "interrupted"
    assert {n["name"]: n["status"] for n in record["notebooks"]}["02-docker-engine"] == (
        "interrupted"
    )
    assert any(k.split()[0].endswith("dpkg") for k in killed), killed
    assert journal.split(), "dpkg's journal is empty: the host was not left mid-install"

    assert again.failed is None, again.failed
    s = steps(again)
    assert s["Docker packages"]["status"] == "changed"
    assert s["Docker packages"]["actions"][0].startswith("dpkg --configure -a")
    assert s["Run a container"]["status"] == "verified", s["Run a container"]
    assert on_host("dpkg --audit; ls /var/lib/dpkg/updates") == ""


# -- 4. check mode with Docker and no swarm ---------------------------------------------------


def test_check_with_docker_and_no_swarm_changes_nothing(engine_check):
    summary, before, after = engine_check
    assert summary.failed is None, summary.failed
    st = statuses(summary)
    assert st["02-docker-engine"] == "ok"
    for name in ("04-swarm", "05-tls", "06-users", "07-registry"):
        assert st[name] == "changed", st
    s = steps(summary)
    assert s["Swarm"]["actions"] == [f"docker swarm init --advertise-addr {ADDRESS}"]
    assert s["Registry answers"]["status"] == "skipped"
    assert "swarm inactive" in after
    assert after == before


# -- 5. the whole runbook, twice --------------------------------------------------------------


def test_first_run_makes_the_swarm_and_verifies_the_registry(fresh_runs):
    first, _ = fresh_runs
    assert first.failed is None, first.failed
    s = statuses(first)
    assert s["02-docker-engine"] == "ok"  # installed by the run after the interrupted one
    for name in ("04-swarm", "05-tls", "06-users", "07-registry"):
        assert s[name] == "changed", s
    assert s["08-verify"] == "changed"  # the image is new in the registry


def test_second_run_changes_nothing(fresh_runs):
    _, second = fresh_runs
    assert second.failed is None, second.failed
    assert [(n.name, n.changed) for n in second.notebooks] == [
        (n.name, 0) for n in second.notebooks
    ]


# -- 6. this machine trusts the registry (trust_on_runner) ------------------------------------


def test_trust_on_runner_lets_this_machine_pull(fresh_runs, fresh_host):
    """The runner is another machine than the host here: with trust_on_runner, this
    machine's Docker trusts the registry's CA, and a login and pull from here work."""
    here = Path("/etc/docker/certs.d/10.204.0.2:5000")
    trusting = fresh_host / "trusting.yaml"
    trusting.write_text(
        yaml.safe_dump({**yaml.safe_load(PARAMS.read_text()), "trust_on_runner": True})
    )
    shutil.rmtree(here, ignore_errors=True)
    try:
        summary = runner.run(trusting, only=["05"], out_root=fresh_host / "runs", **quiet)
        assert summary.failed is None, summary.failed
        assert steps(summary)["This machine trusts the registry"]["status"] == "changed"
        assert (here / "ca.crt").read_bytes() == (Path(summary.folder) / "ca.crt").read_bytes()
        pulled = subprocess.run(
            [
                "bash",
                "-c",
                "set -e; export DOCKER_CONFIG=$(mktemp -d); trap 'rm -rf $DOCKER_CONFIG' EXIT\n"
                "docker login -u admin --password-stdin 10.204.0.2:5000 >/dev/null "
                "< /var/lib/runbook-lab/client/registry-admin.password\n"
                "docker pull -q 10.204.0.2:5000/hello-world\n"
                "docker image rm 10.204.0.2:5000/hello-world >/dev/null",
            ],
            capture_output=True,
            text=True,
        )
        assert pulled.returncode == 0, pulled.stderr
        again = runner.run(trusting, only=["05"], out_root=fresh_host / "runs", **quiet)
        assert [n.changed for n in again.notebooks] == [0]
    finally:
        shutil.rmtree(here, ignore_errors=True)
