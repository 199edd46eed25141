"""Swarm: a single-node swarm that more nodes can join later (tutorial: 初始化集群).

The tutorial ran a bare ``docker swarm init``, which fails on hosts with several addresses;
the runbook passes ``--advertise-addr`` (the parameter, or the host's only address).
"""

from __future__ import annotations

import ipaddress

from . import firewall
from .context import Runbook
from .errors import ParameterError, RunbookError
from .facts import HostFacts, read_swarm
from .steps import Call, Cmd, Outcome, Plan, Skip, StepResult, step

# Interfaces Docker and container runtimes create; never the address other nodes use.
_VIRTUAL = ("docker", "br-", "veth", "virbr", "cni", "flannel", "cali", "vxlan", "lo")

# What other nodes need open to join this one later.
PORTS = "2377/tcp (management), 7946/tcp+udp (gossip), 4789/udp (overlay traffic)"


def advertise_address(f: HostFacts, wanted: str | None) -> str | None:
    """The address to advertise, or None to let Docker choose (only loopback is there)."""
    if wanted:
        return wanted
    # Every address counts, a second one on the same interface too: Docker refuses to
    # choose between them, and so does the runbook.
    candidates = [(name, addr) for name, addr in f.addresses if not name.startswith(_VIRTUAL)]
    if len(candidates) == 1:
        return candidates[0][1]
    if not candidates:
        return None
    listed = ", ".join(f"{a} ({n})" for n, a in candidates)
    raise ParameterError(
        "swarm_advertise_addr",
        None,
        f"the host has several addresses ({listed}); say which one other nodes reach it by",
        candidates[0][1],
    )


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def kept_address_note(f: HostFacts, wanted: str | None) -> str:
    """When the swarm is active already: what to know if it advertises another address
    than the parameter asks (a swarm keeps the address it was made with)."""
    if not wanted or not f.swarm.node_addr:
        return ""
    # The parameter may name an interface; an address may be written in several ways.
    meant = {addr for name, addr in f.addresses if name == wanted} or {wanted}
    if _normal(f.swarm.node_addr) in {_normal(a) for a in meant}:
        return ""
    return (
        f"the swarm advertises {f.swarm.node_addr}, not swarm_advertise_addr {wanted}: an "
        "active swarm keeps its address (to change it, `docker swarm leave --force` and run "
        "again, which deletes the swarm's services and secrets)"
    )


def plan_init(f: HostFacts, wanted: str | None) -> list[Cmd]:
    """Nothing when the swarm is active; ``docker swarm init`` when it is inactive."""
    state = f.swarm.state
    if state == "active":
        if not f.swarm.is_manager:
            raise RunbookError(
                "this node is in a swarm but is not a manager: run the runbook on a manager"
            )
        return []
    if state not in ("inactive", ""):
        raise RunbookError(
            f"the swarm is {state!r} on this node; see `docker info`. To start over: "
            "`docker swarm leave --force` (this deletes the swarm's secrets)"
        )
    argv = ["docker", "swarm", "init"]
    addr = advertise_address(f, wanted)
    if addr:
        argv += ["--advertise-addr", addr]
    return [Cmd(argv)]


@step("Swarm")
def init(rb: Runbook) -> Outcome:
    f = rb.facts()
    if not f.docker_server:
        if rb.dry_run:
            return Plan(
                [Call("docker swarm init", _nothing)], "to do once Docker runs (notebook 02)"
            )
        raise RunbookError("the Docker engine does not answer: run notebook 02 first")
    s, note = f.swarm, kept_address_note(f, rb.p.swarm_advertise_addr)

    def describe(result: StepResult) -> None:
        now = read_swarm(rb.host)
        result.details.update(node=now.node_id, address=now.node_addr, **_ports())

    return Plan(
        plan_init(f, rb.p.swarm_advertise_addr),
        changed="swarm initialised; this node is its manager",
        unchanged=f"swarm already active; this node ({s.node_addr}) is a manager of {s.nodes}",
        details={"node": s.node_id, "address": s.node_addr, **_ports()} if s.node_id else {},
        warnings=[note] if note else [],
        after=describe,
    )


def _ports() -> dict[str, str]:
    return {"ports for more nodes": PORTS}


def _nothing(_host: object) -> None:
    return None


def published_ports(rb: Runbook) -> list[int]:
    """The ports Docker publishes for the runbook's services."""
    ports = [rb.p.registry_port]
    if rb.p.portainer_enabled:
        ports.append(rb.p.portainer_port)
        if rb.p.portainer_edge_port is not None:
            ports.append(rb.p.portainer_edge_port)
    if rb.p.mirror_enabled:
        ports.append(rb.p.mirror_port)
    return ports


@step("Allowed networks")
def allowed_networks(rb: Runbook) -> Outcome:
    """Only ``allow_from`` (and the host itself) reach the registry's and the swarm's ports;
    see :mod:`runbook_lib.firewall`."""
    allow, ports = rb.p.allow_from, published_ports(rb)
    # One iptables read (milliseconds); the host's facts are not asked again after init.
    state = firewall.parse(
        rb.host.sh(firewall.READ, display="iptables -S (the runbook's rules)").stdout
    )
    if not state.get("DOCKER-USER"):  # Docker makes that chain when it starts
        if not allow:
            return Skip("allow_from is empty: anyone may connect")
        if rb.dry_run:
            return Plan([Call("iptables-restore --noflush", _nothing)], "to do once Docker runs")
        raise RunbookError("Docker's DOCKER-USER chain is missing: run notebook 02 first")
    plan = firewall.plan(state, allow, ports)
    listed = ", ".join(allow)
    swarm_ports = "2377/tcp, 7946/tcp+udp, 4789/udp"
    reached = f"ports {', '.join(map(str, ports))}/tcp and {swarm_ports}"
    if not allow and not plan:
        return Skip("allow_from is empty: anyone may connect (no firewall rule)")
    return Plan(
        plan,
        changed=f"only {listed} and the host itself reach {reached}"
        if allow
        else "restriction lifted: anyone may connect",
        unchanged=f"only {listed} and the host itself reach {reached}",
        diffs=[{"path": "iptables (filter table)", "text": firewall.diff(state, allow, ports)}],
    )
