"""Preflight: can this host be set up? Reads facts only; changes nothing.

The tutorial assumed one CentOS 7 host. CentOS 7 is end-of-life and Docker no longer ships
for it, so the runbook supports EL 8/9, Debian and Ubuntu (EL 7 with a warning), and says
plainly what it cannot do on the host it finds (for example, enable a service at boot when
systemd does not run the host).
"""

from __future__ import annotations

import ipaddress

from .context import Runbook
from .errors import UnsupportedHost
from .facts import HostFacts
from .steps import Verified, step

MIN_FREE_GIB = 2
ARCHES = ("x86_64", "aarch64")
SUPPORTED = {
    "debian": {"debian": 11, "ubuntu": 20},
    "rhel": {"rhel": 8, "centos": 7, "rocky": 8, "almalinux": 8, "ol": 8},
}


def check_os(f: HostFacts) -> str:
    """A one-line verdict on the OS, or :class:`UnsupportedHost`."""
    os_ = f.os
    if os_.family == "other":
        raise UnsupportedHost(
            f"{os_.pretty} is not supported: the runbook knows Debian, Ubuntu and EL 8/9 "
            "(RHEL, Rocky, AlmaLinux, CentOS Stream)."
        )
    if f.arch not in ARCHES:
        raise UnsupportedHost(f"architecture {f.arch} is not supported ({', '.join(ARCHES)})")
    if os_.id in ("fedora", "amzn"):
        raise UnsupportedHost(
            f"{os_.pretty} is not supported: the runbook installs Docker on EL 8/9, Debian and Ubuntu"
        )
    minimum = SUPPORTED[os_.family].get(os_.id)
    if minimum and os_.major and os_.major < minimum:
        raise UnsupportedHost(f"{os_.pretty} is too old (at least version {minimum} is needed)")
    note = ""
    if os_.family == "rhel" and os_.major == 7:
        note = " (EL 7 is end-of-life: Docker CE no longer ships for it; use at your own risk)"
    return f"{os_.pretty}, {f.arch}, package family {os_.family}{note}"


def init_warning(f: HostFacts) -> str | None:
    """What to know when systemd does not run the host; None when it does."""
    if f.init == "systemd":
        return None
    return (
        f"PID 1 is {f.init!r}, not systemd: the runbook can start the Docker service but "
        "cannot make sure it starts at boot; arrange that yourself"
    )


@step("Operating system", each_host=True)
def os_release(rb: Runbook) -> Verified:
    f = rb.facts()
    warning = init_warning(f)
    init = "systemd: services are enabled at boot" if warning is None else f.init
    return Verified(check_os(f), details={"init": init}, warnings=[warning] if warning else [])


@step("Privileges", each_host=True)
def privileges(rb: Runbook) -> Verified:
    uid = rb.host.run(["id", "-u"]).stdout.strip()
    if uid != "0":
        raise UnsupportedHost(f"commands do not run as root on {rb.host.name} (uid {uid})")
    how = "as root" if rb.host.is_root else f"as {rb.host.user} through sudo"
    return Verified(f"commands run {how}")


@step("Disk space", each_host=True)
def disk(rb: Runbook) -> Verified:
    free = rb.facts().free_kib
    where = "/var" if "/var" in free else "/"
    gib = free.get(where, 0) / 1024 / 1024
    if gib < MIN_FREE_GIB:
        raise UnsupportedHost(
            f"only {gib:.1f} GiB free on {where}; images and the registry's data need at "
            f"least {MIN_FREE_GIB} GiB"
        )
    return Verified(f"{gib:.1f} GiB free on {where}")


@step("Registry port")
def registry_port(rb: Runbook) -> Verified:
    p, f = rb.p, rb.facts()
    if not f.port_in_use(p.registry_port):
        return Verified(f"port {p.registry_port} is free")
    service = rb.names.registry_service
    if f.docker_server:
        r = rb.host.run(
            [
                "docker",
                "service",
                "inspect",
                service,
                "--format",
                "{{range .Endpoint.Spec.Ports}}{{.PublishedPort}} {{end}}",
            ],
            check=False,
        )
        if r.ok and str(p.registry_port) in r.stdout.split():
            return Verified(f"port {p.registry_port} is served by {service}")
    raise UnsupportedHost(
        f"port {p.registry_port} is already in use on the host by something other than "
        f"the registry service {service}; choose another 'registry_port' or free it"
    )


@step("Swarm address")
def swarm_address(rb: Runbook) -> Verified:
    """Which address the swarm will advertise: refused now, not after Docker is installed,
    when the host has several and the parameter does not say."""
    from .swarm import advertise_address, kept_address_note

    f = rb.facts()
    if f.swarm.state == "active":
        note = kept_address_note(f, rb.p.swarm_advertise_addr)
        return Verified(
            f"swarm already active on {f.swarm.node_addr}", warnings=[note] if note else []
        )
    addr = advertise_address(f, rb.p.swarm_advertise_addr)
    return Verified(f"will advertise {addr or 'the address Docker picks'}")


@step("Registry address")
def registry_address(rb: Runbook) -> Verified:
    name = rb.p.registry_host
    try:
        ipaddress.ip_address(name)
        return Verified(f"{name} is an IP address")
    except ValueError:
        pass
    r = rb.host.run(["getent", "hosts", name], privileged=False, check=False)
    if not r.ok:
        raise UnsupportedHost(
            f"the host cannot resolve 'registry_host' {name!r}: add a DNS record (or an "
            "/etc/hosts line) pointing at the host, or use its IP address"
        )
    return Verified(f"{name} resolves to {r.stdout.split()[0]}")
