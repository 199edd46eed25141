"""The Docker engine (tutorial: 安装 Docker): remove old packages, install, start, enable.

Facts are read in one command (:func:`packages`); the plans are pure functions of those
facts, tested as tables for every distribution family without a host.

Sources (parameter ``docker_source``):

- ``docker``: Docker's own repository, as the tutorial did (``docker-ce``, ``docker-ce-cli``,
  ``containerd.io``, plus the buildx and compose plugins). EL 8/9, Debian, Ubuntu; EL 7 with
  the tutorial's yum commands.
- ``distribution``: the distribution's own package (``docker.io`` on Debian and Ubuntu),
  for hosts that cannot reach Docker's repository. EL has none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import facts, progress
from .context import Runbook
from .errors import ParameterError, RunbookError, UnsupportedHost
from .facts import DOCKER_SERVER_SH, OsRelease
from .hosts import Host
from .steps import Call, Cmd, Found, Outcome, Plan, Put, Skip, StepResult, Verified, step

REPO = "https://download.docker.com/linux"
CE = [
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
]

# Packages that conflict with the wanted ones, by family and source. The EL list is the
# tutorial's `yum remove` list plus podman/runc/buildah, which conflict with containerd.io
# on EL 8/9; the Debian lists are Docker's documented ones.
CONFLICTS = {
    ("rhel", "docker"): [
        "docker",
        "docker-client",
        "docker-client-latest",
        "docker-common",
        "docker-latest",
        "docker-latest-logrotate",
        "docker-logrotate",
        "docker-engine",
        "podman",
        "runc",
        "buildah",
        "podman-docker",
    ],
    ("debian", "docker"): [
        "docker.io",
        "docker-doc",
        "docker-compose",
        "docker-compose-v2",
        "podman-docker",
        "containerd",
        "runc",
    ],
    ("debian", "distribution"): ["docker-ce", "docker-ce-cli", "containerd.io", "docker-engine"],
}

APT = [
    "env",
    "DEBIAN_FRONTEND=noninteractive",
    "apt-get",
    "-y",
    "-q",
    "-o",
    "DPkg::Lock::Timeout=300",
]
# apt-get update, each try stopped after three minutes, three tries: a mirror or proxy that
# closes a connection mid-transfer can leave apt's http method waiting for ever (seen with
# apt 2.6: the socket in CLOSE-WAIT, apt still waiting), holding the lists' lock.
_UPDATE = (
    'for try in 1 2 3; do timeout -k 10 180 "$@" update && exit 0; '
    'echo "apt-get update: try $try of 3 failed or hung" >&2; sleep 2; done; exit 1'
)
APT_UPDATE = ["sh", "-c", _UPDATE, "apt-get-update", *APT]

_FACTS = (
    r"""
echo '== installed'
if command -v dpkg-query >/dev/null; then
  dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' "$@" 2>/dev/null | awk '$2 ~ /^ii/ {print $1, $3}'
elif command -v rpm >/dev/null; then
  rpm -q --qf '%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE}\n' "$@" 2>/dev/null | grep -v 'not installed' | sed 's/(none)://'
fi
echo '== repo'
# Docker's repository under any file name (Docker's docs say docker.list, add-apt-repository
# makes another): a second entry for it would make apt refuse the conflicting Signed-By.
# Only files apt and dnf read: not the .save or .distUpgrade copies an upgrade leaves.
grep -lsE '^[^#]*download\.docker\.com' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
  /etc/apt/sources.list.d/*.sources /etc/yum.repos.d/*.repo
echo '== dpkg'
# dpkg's journal holds a file while a dpkg run is unfinished: one runs now, or one was cut
# short and apt refuses to work until `dpkg --configure -a` (apt's debSystem::CheckUpdates
# looks for the same all-digit names).
ls /var/lib/dpkg/updates 2>/dev/null | grep -E '^[0-9]+$' | head -n 1
echo '== systemd'
if test -d /run/systemd/system; then
  echo "enabled $(systemctl is-enabled docker 2>/dev/null || true)"
  echo "active $(systemctl is-active docker 2>/dev/null || true)"
fi
echo '== sysv'
test -x /etc/init.d/docker && echo script
ls /etc/rc2.d/S*docker /etc/rc3.d/S*docker 2>/dev/null | head -n 1
echo '== server'
"""
    + DOCKER_SERVER_SH
    + r"""
echo '== end'
"""
)


@dataclass(frozen=True)
class EngineFacts:
    installed: dict[str, str] = field(default_factory=dict)  # package -> version
    repo: bool = False
    systemd: bool = False
    enabled: str = ""  # systemctl is-enabled docker
    active: str = ""
    server: str = ""  # the engine's version when it answers
    sysv_script: bool = False  # /etc/init.d/docker, for hosts not run by systemd
    sysv_enabled: bool = False  # linked into a runlevel, so it starts at boot
    dpkg_unfinished: bool = False  # dpkg's journal is not empty (see plan_finish_dpkg)


def parse_facts(text: str) -> EngineFacts:
    from .facts import sections

    s = sections(text)
    installed = dict(line.split(" ", 1) for line in s.get("installed", []) if " " in line)
    sysd = {}
    for line in s.get("systemd", []):
        key, _, value = line.partition(" ")
        sysd[key] = value.strip()
    return EngineFacts(
        installed=installed,
        repo=bool(s.get("repo")),
        systemd=bool(sysd),
        enabled=sysd.get("enabled", ""),
        active=sysd.get("active", ""),
        server=(s.get("server") or [""])[0],
        sysv_script="script" in s.get("sysv", []),
        sysv_enabled=any(line.startswith("/etc/rc") for line in s.get("sysv", [])),
        dpkg_unfinished=bool(s.get("dpkg")),
    )


def read_packages(host: Host) -> EngineFacts:
    names = sorted({*CE, "docker.io", *(n for lst in CONFLICTS.values() for n in lst)})
    out = host.sh(_FACTS, *names, display="read Docker packages, repository and service")
    return parse_facts(out.stdout)


def packages(rb: Runbook) -> EngineFacts:
    """The engine's facts, read again after a step changed the host."""
    return facts.shared(rb.host, "engine", read_packages)


# Read in the background with the common facts: notebook 02 needs them.
facts.PREFETCH.append(lambda host: facts.prefetch(host, "engine", read_packages))


def finish_dpkg(host: Host) -> None:
    """Wait while another apt or dpkg runs (``apt-get check`` takes their lock, waiting up to
    DPkg::Lock::Timeout; it fails at once on a dpkg that was cut short, which is expected),
    then configure what a dpkg cut short left unpacked, keeping changed configuration files."""
    host.run([*APT, "check"], check=False, timeout=600)
    host.run(
        [*APT[:2], "dpkg", "--force-confdef", "--force-confold", "--configure", "-a"],
        timeout=1800,
    )


def plan_finish_dpkg(os_: OsRelease, f: EngineFacts) -> list[Call]:
    """Before apt installs or removes anything on a host where a dpkg run is unfinished: an
    install interrupted there (the run stopped, the host went down) leaves packages
    unpacked but not configured, and apt refuses to work ("dpkg was interrupted") until
    it is finished. One that still runs (the run that started it was interrupted, apt goes
    on) is waited for."""
    if os_.family != "debian" or not f.dpkg_unfinished:
        return []
    return [Call("dpkg --configure -a (after any apt or dpkg still running)", finish_dpkg)]


def check_source(os_: OsRelease, source: str) -> None:
    if os_.family == "rhel" and source == "distribution":
        raise ParameterError(
            "docker_source", source, f"{os_.pretty} has no Docker package of its own", "docker"
        )
    if os_.family not in ("rhel", "debian"):
        raise UnsupportedHost(f"no way to install Docker on {os_.pretty}")


def wanted_packages(os_: OsRelease, source: str) -> list[str]:
    return ["docker.io"] if (os_.family, source) == ("debian", "distribution") else CE


def plan_remove_old(os_: OsRelease, source: str, f: EngineFacts) -> list[Cmd | Call]:
    """Remove the conflicting packages that are installed; nothing when none is."""
    check_source(os_, source)
    old = [p for p in CONFLICTS[(os_.family, source)] if p in f.installed]
    if not old:
        return []
    if os_.family == "debian":
        return [
            *plan_finish_dpkg(os_, f),
            Cmd([*APT, "remove", *old], watch=f"apt-get remove {' '.join(old)}"),
        ]
    return [Cmd([_yum(os_), "remove", "-y", *old])]


def _yum(os_: OsRelease) -> str:
    return "yum" if os_.major == 7 else "dnf"


def repo_url(os_: OsRelease) -> str:
    """Docker's repository for this distribution (Rocky and Alma use the CentOS one)."""
    if os_.family == "debian":
        return f"{REPO}/{'ubuntu' if os_.id == 'ubuntu' or 'ubuntu' in os_.id_like else 'debian'}"
    return f"{REPO}/{'rhel' if os_.id == 'rhel' else 'centos'}"


def apt_sources(os_: OsRelease) -> str:
    return (
        "Types: deb\n"
        f"URIs: {repo_url(os_)}\n"
        f"Suites: {os_.codename}\n"
        "Components: stable\n"
        "Signed-By: /etc/apt/keyrings/docker.asc\n"
    )


def plan_repo(os_: OsRelease, source: str, f: EngineFacts) -> list[Cmd | Put | Call]:
    """Add Docker's repository (the tutorial's yum-config-manager --add-repo)."""
    if source != "docker" or f.repo:
        return []
    if os_.family == "debian":
        if not os_.codename:
            raise UnsupportedHost(f"{os_.pretty}: no VERSION_CODENAME in /etc/os-release")
        return [
            *plan_finish_dpkg(os_, f),
            Cmd(APT_UPDATE, watch="apt-get update", shown="apt-get update"),
            Cmd([*APT, "install", "ca-certificates", "curl"], watch="apt-get install curl"),
            Cmd(["install", "-m", "0755", "-d", "/etc/apt/keyrings"]),
            Cmd(["curl", "-fsSL", f"{repo_url(os_)}/gpg", "-o", "/etc/apt/keyrings/docker.asc"]),
            Cmd(["chmod", "a+r", "/etc/apt/keyrings/docker.asc"]),
            Put("/etc/apt/sources.list.d/docker.sources", apt_sources(os_), 0o644, text=True),
        ]
    if os_.major == 7:
        return [
            Cmd(["yum", "install", "-y", "yum-utils", "device-mapper-persistent-data", "lvm2"]),
            Cmd(["yum-config-manager", "--add-repo", f"{repo_url(os_)}/docker-ce.repo"]),
        ]
    return [
        Cmd(["dnf", "install", "-y", "dnf-plugins-core"]),
        Cmd(["dnf", "config-manager", "--add-repo", f"{repo_url(os_)}/docker-ce.repo"]),
    ]


def pick_version(available: list[str], wanted: str) -> str:
    """The full package version for a short one: ``24.0.7`` -> ``5:24.0.7-1~debian.12~bookworm``."""
    for full in available:
        bare = full.split(":", 1)[-1]
        if (
            full == wanted
            or bare == wanted
            or bare.startswith(wanted + "-")
            or bare.startswith(wanted + "~")
        ):
            return full
    raise ParameterError(
        "docker_version",
        wanted,
        "not available from the repository",
        ", ".join(available[:5]) or "null (latest)",
    )


def plan_install(
    os_: OsRelease,
    source: str,
    f: EngineFacts,
    version: str | None,
    available: list[str] | None = None,
    lists_fresh: bool = False,
) -> list[Cmd | Call]:
    """Install the engine; pinned versions need ``available`` (from :func:`versions`).
    apt's package lists are updated first, unless ``lists_fresh`` (just updated)."""
    pkgs = wanted_packages(os_, source)
    main = pkgs[0]
    if version is None:
        missing = [p for p in pkgs if p not in f.installed]
        if not missing:
            return []
        spec = missing
    else:
        full = pick_version(available or [], version)
        if f.installed.get(main) == full:
            return []
        if os_.family == "debian":
            spec = [
                f"{p}={full}" if p in ("docker-ce", "docker-ce-cli", "docker.io") else p
                for p in pkgs
            ]
        else:
            # Without the epoch: docker-ce's is 3, docker-ce-cli's 1; dnf matches either.
            bare = full.split(":", 1)[-1]
            spec = [f"{p}-{bare}" if p in ("docker-ce", "docker-ce-cli") else p for p in pkgs]
    if os_.family == "debian":
        return [
            *plan_finish_dpkg(os_, f),
            *(
                []
                if lists_fresh
                else [Cmd(APT_UPDATE, watch="apt-get update", shown="apt-get update")]
            ),
            Cmd(
                [*APT, "install", "--allow-downgrades", *spec],
                timeout=1800,
                watch=f"apt-get install {' '.join(spec)}",
            ),
        ]
    return [
        Cmd(
            [_yum(os_), "install", "-y", *spec],
            timeout=1800,
            watch=f"{_yum(os_)} install {' '.join(spec)}",
        )
    ]


def plan_service(f: EngineFacts) -> list[Cmd]:
    """Enable and start the service: with systemd, or with its init script elsewhere."""
    if f.systemd:
        if f.enabled == "enabled" and f.active == "active":
            return []
        return [Cmd(["systemctl", "enable", "--now", "docker"])]
    plan = []
    if f.sysv_script and not f.sysv_enabled:
        plan.append(Cmd(["update-rc.d", "docker", "defaults"]))
    if not f.server:
        plan.append(Cmd(["service", "docker", "start"], timeout=120))
    return plan


def boot_note(f: EngineFacts, pid1: str) -> tuple[str, str | None]:
    """Whether the engine comes back after a reboot, in words; and a warning when it may
    not (``pid1``: the host's init, as :class:`runbook_lib.facts.HostFacts` names it)."""
    if f.systemd:
        return "enabled at boot", None
    if f.sysv_script and pid1 == "init":
        return "enabled at boot (its init script is in the runlevels)", None
    if f.sysv_script:
        return "its init script is in the runlevels", (
            f"PID 1 is {pid1!r}, neither systemd nor SysV init: nothing may run the "
            "runlevels' scripts at boot; make sure the Docker service starts at boot"
        )
    return "not enabled at boot", (
        "neither systemd nor an init script manages the Docker service here: it will not "
        "start at boot unless you arrange it"
    )


@step("Old Docker packages", each_host=True)
def remove_old(rb: Runbook) -> Plan:
    os_ = rb.facts().os
    plan = plan_remove_old(os_, rb.p.docker_source, packages(rb))
    if plan and rb.p.docker_version and not rb.dry_run:
        # A pin the repository cannot satisfy stops the run before anything is removed
        # (which is why the notebook adds Docker's repository first).
        pick_version(available_versions(rb), rb.p.docker_version)
    return Plan(
        plan,
        changed="conflicting packages removed",
        unchanged="none of the conflicting packages is installed",
    )


@step("Docker repository", each_host=True)
def repository(rb: Runbook) -> Plan:
    os_, source = rb.facts().os, rb.p.docker_source
    check_source(os_, source)
    why = (
        "not needed: the distribution's package is used"
        if source == "distribution"
        else f"{repo_url(os_)} already configured"
    )
    return Plan(
        plan_repo(os_, source, packages(rb)), changed=f"{repo_url(os_)} added", unchanged=why
    )


def available_versions(rb: Runbook) -> list[str]:
    """Versions of the engine the host's package manager offers, newest first."""
    os_ = rb.facts().os
    main = wanted_packages(os_, rb.p.docker_source)[0]
    if os_.family == "debian":
        found = _madison(rb, main)
        if not found and not rb.dry_run:
            # A new host's package lists are empty until the first update.
            with progress.activity("apt-get update", unit="lines", quiet=1) as p:
                updated = rb.host.run(
                    APT_UPDATE, check=False, timeout=600, on_line=p.line, display="apt-get update"
                )
            rb.host.changes += 1  # new package lists: facts read from the old are stale
            # The install that follows in this notebook need not update them again.
            rb.cache["apt lists fresh"] = updated.ok
            found = _madison(rb, main)
        return found
    out = rb.host.run([_yum(os_), "list", main, "--showduplicates", "-q"], check=False).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith(main + ".")]
    return sorted({r[1] for r in rows if len(r) >= 2}, reverse=True)


def _madison(rb: Runbook, package: str) -> list[str]:
    out = rb.host.run(["apt-cache", "madison", package], check=False).stdout
    return [line.split("|")[1].strip() for line in out.splitlines() if line.count("|") >= 2]


@step("Available versions", each_host=True)
def versions(rb: Runbook) -> Outcome:
    """The tutorial's ``yum list docker-ce --showduplicates | sort -r``, for pinning.

    Listed when a version is pinned or nothing is installed yet; otherwise the package
    manager's index is not worth loading on every run."""
    pinned = rb.p.docker_version
    main = wanted_packages(rb.facts().os, rb.p.docker_source)[0]
    if not pinned and main in packages(rb).installed:
        return Skip(
            f"not listed: the latest {main} is wanted and installed (set docker_version to pin one)"
        )
    found = available_versions(rb)
    return Verified(
        f"{len(found)} version(s); newest: {', '.join(found[:5]) or 'none (repository not configured yet)'}",
        details={"docker_version": pinned or "null (latest)"},
    )


@step("Docker packages", each_host=True)
def install(rb: Runbook) -> Plan:
    os_, p = rb.facts().os, rb.p
    f = packages(rb)
    plan = plan_install(
        os_,
        p.docker_source,
        f,
        p.docker_version,
        available_versions(rb) if p.docker_version else None,
        lists_fresh=rb.cache.get("apt lists fresh", False),
    )
    names = wanted_packages(os_, p.docker_source)
    main = names[0]

    def installed(result: StepResult) -> None:
        # The first run names the version it installed, as every later run does.
        now = packages(rb).installed
        result.reason = ", ".join(f"{n} {now.get(n, '?')}" for n in names) + " installed"

    return Plan(
        plan,
        changed=f"{' '.join(names)} installed",
        unchanged=f"{main} {f.installed.get(main, '')} installed",
        after=installed,
    )


@step("Docker service", each_host=True)
def service(rb: Runbook) -> Plan:
    f = packages(rb)
    how = "systemd" if f.systemd else "its init script" if f.sysv_script else "no init system"
    note, warning = boot_note(f, rb.facts().init)

    def answers(result: StepResult) -> None:
        result.details["engine"] = wait_engine(rb)

    return Plan(
        plan_service(f),
        changed=f"started ({how}); {note}",
        unchanged=f"running ({how}); {note}",
        warnings=[warning] if warning else [],
        after=answers,
    )


def wait_engine(rb: Runbook, timeout: float = 60.0) -> str:
    """Poll until the engine answers; its version."""
    start = time.monotonic()
    while True:
        r = rb.host.run(["docker", "version", "--format", "{{.Server.Version}}"], check=False)
        if r.ok and r.stdout.strip():
            return r.stdout.strip()
        if time.monotonic() - start > timeout:
            raise RunbookError(
                f"the Docker engine did not answer within {timeout:.0f} s: {r.stderr.strip()}"
            )
        time.sleep(0.2)


def docker_run(host: Host, image: str) -> str:
    """``docker run --rm IMAGE`` (pulled when missing); the first line it printed."""
    with progress.activity(f"docker run --rm {image}", unit="lines", quiet=1) as p:  # may pull
        out = host.run(["docker", "run", "--rm", image], timeout=300, on_line=p.line).stdout
    return next((line for line in out.splitlines() if line.strip()), "")


@step("Run a container", check_only=True, each_host=True)
def runs_containers(rb: Runbook, image: str = "hello-world") -> Outcome:
    """The tutorial's ``docker run hello-world``, after this notebook changed the engine.

    An engine that was installed and running already, and that nothing here changed, is
    reported by the version it answers with: notebook 08 runs an image end to end on
    every fresh setup, and a second run of this notebook should cost nothing."""
    if not any(r.changed for r in rb.results):
        server = packages(rb).server
        if server:
            return Found(f"Docker {server} answers; unchanged here, so {image} is not run")
    if rb.p.verify_archive:
        # The host cannot pull from Docker Hub: notebook 08 runs the image seeded instead.
        argv = ["docker", "version", "--format", "{{.Server.Version}}"]
        version = rb.host.run(argv).stdout.strip()
        return Verified(
            f"Docker {version} answers; {image} is not run: with verify_archive, Docker Hub "
            "may be out of reach (notebook 08 runs the seeded image)"
        )
    return Verified(f"docker run --rm {image}: {docker_run(rb.host, image)}")
