"""Compose (tutorial: 安装 Docker 编排工具): the v2 plugin, where the host's packages have it.

The tutorial ran ``pip install docker-compose``: Compose v1, retired in 2023 and broken on
current Python. Compose v2 is the ``docker compose`` plugin. The runbook does not need
either: ``docker stack deploy`` (notebook 07) reads the compose file itself. This step
installs the plugin for the operator's convenience when a package offers it, and says so
plainly when none does.
"""

from __future__ import annotations

from . import facts
from .context import Runbook
from .engine import APT, CE, _yum
from .hosts import Host
from .steps import Cmd, Found, Outcome, Plan, Skip, StepResult, step

# Debian/Ubuntu packages that carry Compose v2, by preference. Debian's `docker-compose`
# is v2 only from trixie on (bookworm's is v1), hence the version check.
DEB_CANDIDATES = ["docker-compose-plugin", "docker-compose-v2", "docker-compose"]


def parse_candidates(policy: str) -> dict[str, str]:
    """``apt-cache policy A B`` -> {package: candidate version} (packages with one)."""
    out, current = {}, None
    for line in policy.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version != "(none)":
                out[current] = version
    return out


def pick_package(candidates: dict[str, str]) -> str | None:
    for name in DEB_CANDIDATES:
        version = candidates.get(name)
        if version is None:
            continue
        bare = version.split(":", 1)[-1]
        if name != "docker-compose" or bare[:1].isdigit() and int(bare.split(".")[0]) >= 2:
            return name
    return None


def read_candidates(host: Host) -> dict[str, str]:
    """apt's candidate versions of the packages that may carry Compose v2.

    Read in the background from the first look at the host, before it is known whether the
    host has apt or Compose already (on a host without apt it fails at once): apt loads its
    whole package index for it, which takes half a second on a host that keeps no binary
    cache of it (``pkgcache.bin``). At the lowest priority: it is read ahead, in parallel
    with the work it must not slow down."""
    policy = host.run(
        ["nice", "-n", "19", "apt-cache", "policy", *DEB_CANDIDATES], privileged=False, check=False
    )
    return parse_candidates(policy.stdout)


facts.PREFETCH.append(lambda host: facts.prefetch(host, "compose candidates", read_candidates))


@step("Compose v2")
def plugin(rb: Runbook) -> Outcome:
    installed = rb.facts().compose  # `docker compose version`, read with the host's facts
    if installed:
        return Found(f"docker compose {installed} is installed")
    os_ = rb.facts().os
    if os_.family == "rhel":
        pkg = CE[-1]
        plan = [
            Cmd([_yum(os_), "install", "-y", pkg], timeout=900, watch=f"{_yum(os_)} install {pkg}")
        ]
    else:
        pkg = pick_package(facts.shared(rb.host, "compose candidates", read_candidates))
        if pkg is None:
            return Skip(
                "no Compose v2 package for this host; not needed: `docker stack deploy` reads "
                "the stack file itself"
            )
        plan = [Cmd([*APT, "install", pkg], timeout=900, watch=f"apt-get install {pkg}")]

    def version(result: StepResult) -> None:
        r = rb.host.run(["docker", "compose", "version", "--short"], check=False)
        if r.ok:
            result.reason = f"{pkg} installed: docker compose {r.stdout.strip()}"

    return Plan(plan, changed=f"{pkg} installed", after=version)
