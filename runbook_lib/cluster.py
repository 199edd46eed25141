"""The swarm's other hosts (``nodes``): the ports they need, joining, roles and labels, and
a pull from the registry on every one of them.

The tutorial ends with one node and says that growing the swarm "will be very natural".
On one node a private registry saves little: it earns its keep when several nodes pull from
it. Notebook 02 installs Docker on every host and 05 makes each trust the registry; this
module joins the others to the swarm the first manager made (notebook 04).

A join is confirmed by the first manager's node list, never by the join command's exit
alone. A host already in this swarm is left as it is; a host in another swarm is refused
(the runbook does not take a host out of a swarm it did not make). The join token is a
secret of the swarm (whoever holds it may join): it travels on standard input into the
Docker API's ``POST /swarm/join`` on the node, never on a command line.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .context import Runbook
from .errors import RunbookError
from .steps import Call, Cmd, Found, Plan, StepResult, Verified, step

SWARM_PORT = 2377  # the managers' API: joining and managing
GOSSIP_PORT = 7946  # the nodes' gossip (tcp and udp)


def _no_nodes(rb: Runbook) -> str | None:
    return None if rb.p.nodes else "no nodes listed: the swarm is this one host"


@dataclass(frozen=True)
class NodeSwarm:
    """What a host's engine says of its swarm (``docker info``'s Swarm section)."""

    state: str  # inactive, pending, active, error, locked
    node_id: str = ""
    is_manager: bool = False
    managers: tuple[str, ...] = ()  # the addresses of the managers it knows


def parse_swarm(text: str) -> NodeSwarm:
    data = json.loads(text or "{}") or {}
    return NodeSwarm(
        state=data.get("LocalNodeState", ""),
        node_id=data.get("NodeID", ""),
        is_manager=bool(data.get("ControlAvailable")),
        managers=tuple(m.get("Addr", "") for m in data.get("RemoteManagers") or []),
    )


@dataclass(frozen=True)
class Member:
    """A node as the first manager lists it (``docker node inspect``)."""

    id: str
    hostname: str
    role: str  # manager, worker
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    addr: str
    labels: dict[str, str] = field(default_factory=dict)


def parse_members(text: str) -> dict[str, Member]:
    """Nodes by ID, from ``docker node inspect`` of every node (a JSON list)."""
    out = {}
    for n in json.loads(text or "[]") or []:
        spec, status = n.get("Spec") or {}, n.get("Status") or {}
        out[n["ID"]] = Member(
            id=n["ID"],
            hostname=(n.get("Description") or {}).get("Hostname", ""),
            role=spec.get("Role", ""),
            state=status.get("State", ""),
            availability=spec.get("Availability", ""),
            addr=status.get("Addr", ""),
            labels=dict(spec.get("Labels") or {}),
        )
    return out


def swarm_of(rb: Runbook) -> NodeSwarm:
    """This host's swarm, as its engine says now."""
    out = rb.host.run(["docker", "info", "--format", "{{json .Swarm}}"], check=False)
    return parse_swarm(out.stdout.strip() if out.ok else "")


_MEMBERS = "docker node ls -q | xargs -r docker node inspect"


def members(rb: Runbook) -> dict[str, Member]:
    """The swarm's nodes, as the first manager lists them now."""
    out = rb.main.host.sh(_MEMBERS, display="docker node inspect $(docker node ls -q)")
    return parse_members(out.stdout)


def manager_address(rb: Runbook) -> str:
    """Where the other hosts reach the first manager: the address it advertises."""
    addr = rb.main.facts().swarm.node_addr
    if not addr:
        raise RunbookError(
            f"{rb.main.host.name} is not a swarm manager yet: run notebook 04 (swarm) first"
        )
    return addr


# bash's /dev/tcp: a connection, no tool needed on the host. UDP cannot be checked this
# way (nothing answers a datagram), which is why only the TCP ports are.
_REACH = r"""
for port in "$@"; do
  if timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$ADDR" "$port" 2>/dev/null; then
    echo "$port open"
  else
    echo "$port blocked"
  fi
done
"""


@step("Swarm ports", skip=_no_nodes, each_host=True)
def ports(rb: Runbook) -> Verified | Found:
    """Before joining: the node reaches the first manager on 2377/tcp (joining, managing) and
    7946/tcp (gossip). 7946/udp and 4789/udp (the overlay's traffic) cannot be checked
    without something listening; the service on every node, at the end, uses them."""
    if rb.target.first:
        return Found("the first manager: the others reach it")
    addr = manager_address(rb)
    out = rb.host.sh(
        f"ADDR={addr}\n{_REACH}",
        str(SWARM_PORT),
        str(GOSSIP_PORT),
        display=f"bash -c '</dev/tcp/{addr}/PORT' for {SWARM_PORT}, {GOSSIP_PORT}",
    ).stdout
    blocked = [line.split()[0] for line in out.splitlines() if line.endswith("blocked")]
    if blocked:
        raise RunbookError(
            f"{rb.target.name} cannot reach the first manager {addr} on "
            f"{', '.join(f'{p}/tcp' for p in blocked)}: open the swarm's ports between them "
            "(2377/tcp, 7946/tcp and udp, 4789/udp; a firewall, a security group, or "
            "allow_from without this host), then run again"
        )
    return Verified(f"reaches {addr} on {SWARM_PORT}/tcp and {GOSSIP_PORT}/tcp")


OVERLAY_PORT = 4789  # VXLAN: the overlay networks' traffic (udp)

# On a host that is to join: answer every datagram on the swarm's udp ports, for a minute
# at most or until told to stop; print the ports it could take (a port in use is left out).
_ECHO = r"""
import select, socket, sys, time
socks = []
for port in (7946, 4789):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", port))
    except OSError:
        continue
    socks.append(s)
print("ready", *[s.getsockname()[1] for s in socks], flush=True)
end = time.monotonic() + 60
while socks and time.monotonic() < end:
    for s in select.select(socks, [], [], 0.5)[0]:
        data, peer = s.recvfrom(64)
        if data == b"runbook-stop":
            end = 0
        else:
            s.sendto(data, peer)
"""
# From another host: a datagram to each ADDRESS:PORT given, three tries, an answer awaited.
_ASK = r"""
import socket, sys
for target in sys.argv[1:]:
    addr, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    ok = False
    for _ in range(3):
        try:
            s.sendto(b"runbook-udp", (addr, int(port)))
            ok = s.recvfrom(64)[0] == b"runbook-udp"
            break
        except OSError:
            continue
    print(target, "open" if ok else "blocked", flush=True)
"""
_PY = 'for py in python3 /usr/libexec/platform-python; do command -v $py >/dev/null 2>&1 && exec $py -c "$@"; done; exit 3'


def _udp_listeners(rb: Runbook, joining: list) -> dict[str, tuple[threading.Thread, list[int]]]:
    """Start the echo on each host to join; its thread and the ports it holds."""
    started: dict[str, tuple[threading.Thread, list[int]]] = {}
    for t in joining:
        view, ready, ports = rb.on(t), threading.Event(), []

        def seen(line: str, ports=ports, ready=ready) -> None:
            if line.startswith("ready"):
                ports.extend(int(x) for x in line.split()[1:])
                ready.set()

        def serve(view=view, seen=seen, ready=ready) -> None:
            try:
                view.host.sh(_PY, _ECHO, timeout=90, on_line=seen, display="udp echo on 7946, 4789")
            except RunbookError:
                pass
            finally:
                ready.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ready.wait(30)
        started[t.address] = (thread, ports)
    return started


@step("Swarm ports (udp)", skip=_no_nodes)
def udp_ports(rb: Runbook) -> Found | Verified:
    """Before joining, 7946/udp (gossip) and 4789/udp (the overlay) into each host that is
    to join, from every other host: each to join answers on those ports for a moment, and
    every other host sends it a datagram. (Into a host that runs a swarm already, Docker
    holds the ports and cannot be asked like this.) A host without python3 is not checked."""
    joining = [
        t for t in rb.session.targets if not t.first and swarm_of(rb.on(t)).state == "inactive"
    ]
    if not joining:
        return Found("every node is in the swarm already")
    if rb.dry_run:
        return Found(f"check mode: not checked (would check {len(joining)} host(s) to join)")
    listeners = _udp_listeners(rb, joining)
    try:
        blocked, checked = [], 0
        for source in rb.session.targets:
            asks = [
                f"{t.address}:{port}"
                for t in joining
                if t != source
                for port in listeners[t.address][1]
            ]
            if not asks:
                continue
            out = rb.on(source).host.sh(_PY, _ASK, *asks, check=False, timeout=60).stdout
            for line in out.splitlines():
                target, _, verdict = line.partition(" ")
                checked += 1
                if verdict == "blocked":
                    addr, port = target.rsplit(":", 1)
                    blocked.append(f"{source.address} to {addr} on {port}/udp")
    finally:
        for t in joining:
            for port in listeners[t.address][1]:
                rb.on(t).host.sh(
                    _PY,
                    f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'runbook-stop', ('127.0.0.1', {port}))",
                    check=False,
                )
    if blocked:
        raise RunbookError(
            f"udp blocked between the swarm's hosts: {'; '.join(blocked)}. The swarm needs "
            f"{GOSSIP_PORT}/udp (gossip) and {OVERLAY_PORT}/udp (overlay networks) open between "
            "all its hosts, both ways: open them, then run again"
        )
    if not checked:
        return Found(
            "not checked: no host to join could answer (python3 missing, or the ports held)"
        )
    return Verified(
        f"{GOSSIP_PORT}/udp and {OVERLAY_PORT}/udp reach the {len(joining)} host(s) to join from every other host ({checked} checks)"
    )


# POST /swarm/join on the node's own engine, the body (with the token) on standard input.
_JOIN_PY = r"""
import socket, sys
body = sys.stdin.buffer.read()
s = socket.socket(socket.AF_UNIX)
s.settimeout(110)
s.connect("/var/run/docker.sock")
s.sendall(b"POST /swarm/join HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body)
answer = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    answer += chunk
head, _, rest = answer.partition(b"\r\n\r\n")
code = int(head.split()[1])
sys.stdout.write(rest.decode(errors="replace"))
sys.exit(0 if code == 200 else 1)
"""
_JOIN = r"""
for py in python3 /usr/libexec/platform-python; do
  if command -v "$py" >/dev/null 2>&1; then exec "$py" -c "$1"; fi
done
if command -v curl >/dev/null 2>&1; then
  exec curl -sS --fail-with-body --max-time 110 --unix-socket /var/run/docker.sock \
    -H 'Content-Type: application/json' --data-binary @- http://docker/swarm/join
fi
echo "neither python3 nor curl on this host: the runbook joins through Docker's API" >&2
exit 1
"""


def _join(rb: Runbook, kind: str, manager: str) -> None:
    token = rb.main.host.run(["docker", "swarm", "join-token", "-q", kind]).stdout.strip()
    body = {
        "ListenAddr": "0.0.0.0:2377",
        "AdvertiseAddr": rb.target.address,
        "RemoteAddrs": [f"{manager}:{SWARM_PORT}"],
        "JoinToken": token,
    }
    rb.host.sh(
        _JOIN,
        _JOIN_PY,
        stdin=json.dumps(body),
        timeout=120,
        display=f"docker swarm join --token <{kind} token> --advertise-addr "
        f"{rb.target.address} {manager}:{SWARM_PORT}",
    )


def _in_swarm(rb: Runbook, timeout: float = 60.0) -> Member:
    """Wait until the first manager lists this host's node as ready."""
    deadline = time.monotonic() + timeout
    while True:
        mine = swarm_of(rb)
        member = members(rb).get(mine.node_id) if mine.node_id else None
        if member and member.state == "ready":
            return member
        if time.monotonic() > deadline:
            seen = f"listed as {member.state}" if member else "not listed"
            raise RunbookError(
                f"{rb.target.name} joined, but the first manager has it {seen} after "
                f"{timeout:.0f} s: check the swarm's ports between them (7946/tcp and udp)"
            )
        time.sleep(0.5)


@step("Join the swarm", skip=_no_nodes, each_host=True)
def join(rb: Runbook) -> Found | Plan:
    """Join the host as the role the parameters give it; a host in the swarm already is
    left as it is (its role changed on the first manager if it differs)."""
    t = rb.target
    if t.first:
        return Found("the first manager: the swarm was made here (notebook 04)")
    mine = swarm_of(rb)
    if mine.state == "pending":
        mine = _wait_pending(rb)
    listed = members(rb)
    if mine.state == "active" and mine.node_id in listed:
        m = listed[mine.node_id]
        where = f"node {m.id[:12]} ({m.hostname}), {m.state}"
        if m.role == t.role:
            return Found(f"in this swarm as a {m.role}: {where}")
        verb = "promote" if t.role == "manager" else "demote"
        return Plan(
            [Cmd(["docker", "node", verb, m.id])],
            changed=f"{verb}d to {t.role}: {where}",
            on=rb.main.host,
        )
    if mine.state not in ("inactive", ""):
        raise _elsewhere(t.name, mine)
    manager = manager_address(rb)
    kind = "manager" if t.role == "manager" else "worker"

    def confirmed(result: StepResult) -> None:
        m = _in_swarm(rb)
        result.details.update({"node": m.id[:12], "hostname": m.hostname, "state": m.state})

    return Plan(
        [
            Call(
                f"docker swarm join --token <{kind} token> --advertise-addr {t.address} "
                f"{manager}:{SWARM_PORT}",
                lambda _host: _join(rb, kind, manager),
            )
        ],
        changed=f"joined as a {t.role}, confirmed by the first manager's node list",
        after=confirmed,
    )


def _elsewhere(name: str, mine: NodeSwarm) -> RunbookError:
    known = ", ".join(mine.managers) or "unknown managers"
    return RunbookError(
        f"{name} is {mine.state} in another swarm (node {mine.node_id[:12] or '?'}, "
        f"managers {known}): the runbook does not take a host out of a swarm it did not "
        f"make. Run 'docker swarm leave' on it (its services and, on a manager, that "
        f"swarm's state are lost there), or take it out of nodes"
    )


@step("Swarm membership", skip=_no_nodes, each_host=True)
def membership(rb: Runbook) -> Found | Verified:
    """Before anything changes: a node in another swarm is refused now, not after Docker
    and the registry's trust were set up on it."""
    if rb.target.first:
        return Found(
            "the first manager: the swarm is made or kept here (notebook 04)",
            warnings=rb.p.warnings,
        )
    mine = swarm_of(rb)
    if mine.state in ("inactive", ""):
        return Verified("in no swarm: it joins in notebook 10")
    if rb.main.facts().swarm.state == "active" and mine.node_id in members(rb):
        return Verified(f"already in this swarm (node {mine.node_id[:12]})")
    raise _elsewhere(rb.target.name, mine)


def _wait_pending(rb: Runbook, timeout: float = 60.0) -> NodeSwarm:
    """A join in progress (``pending``) is waited for, not repeated."""
    deadline = time.monotonic() + timeout
    mine = swarm_of(rb)
    while mine.state == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        mine = swarm_of(rb)
    return mine


@step("Node labels", skip=_no_nodes, each_host=True)
def labels(rb: Runbook) -> Found | Plan:
    """The labels the parameters give a node, set on the first manager (placement
    constraints such as ``node.labels.disk == ssd`` read them). A node whose entry lists
    ``labels`` has exactly those; one that does not list any keeps what it has."""
    t = rb.target
    if t.first or not _labels_given(rb):
        return Found("not managed: no labels listed for this host")
    node = swarm_of(rb).node_id
    member = members(rb).get(node) if node else None
    if member is None:  # check mode before the join
        return Plan([], changed="", unchanged=f"to be set after the join: {_show(dict(t.labels))}")
    want, have = dict(t.labels), member.labels
    args: list[str] = []
    for k, v in sorted(want.items()):
        if have.get(k) != v:
            args += ["--label-add", f"{k}={v}"]
    for k in sorted(set(have) - set(want)):
        args += ["--label-rm", k]
    return Plan(
        [Cmd(["docker", "node", "update", *args, member.id])] if args else [],
        changed=f"labels now {_show(want)}",
        unchanged=f"labels {_show(want)}",
        on=rb.main.host,
    )


def _labels_given(rb: Runbook) -> bool:
    i = next(i for i, t in enumerate(rb.session.targets) if t == rb.target) - 1
    return "labels" in rb.p.nodes[i].model_fields_set


def _show(labels: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


@step("Pull on every host", check_only=True, skip=_no_nodes, each_host=True)
def pull(rb: Runbook) -> Verified:
    """Each host logs in to the registry (a throw-away login, gone after the command) and
    pulls the image notebook 08 pushed: its trust (notebook 05) and the route to the
    registry work from there."""
    from .verify import _with_login, pushed_name

    _with_login(rb, "docker", "pull", "-q", pushed_name(rb))
    return Verified(f"logged in and pulled {pushed_name(rb)}")


CHECK_SERVICE = "runbook-pull-check"


@step("A service on every node", check_only=True, skip=_no_nodes)
def service_everywhere(rb: Runbook, timeout: float = 120.0) -> Verified:
    """A global job of the registry's image, created with ``--with-registry-auth``: the
    swarm hands the registry's credentials to every node, each pulls from the registry and
    runs it once. This is how a service of private images is deployed on a swarm (``docker
    stack deploy --with-registry-auth`` for a stack); without the flag, workers cannot pull."""
    from .verify import _with_login, pushed_name

    host, image = rb.host, pushed_name(rb)
    host.run(["docker", "service", "rm", CHECK_SERVICE], check=False)  # an earlier run's
    _with_login(
        rb,
        "docker",
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        CHECK_SERVICE,
        "--mode",
        "global-job",
        "--with-registry-auth",
        image,
    )
    try:
        want = len(rb.session.targets)
        deadline = time.monotonic() + timeout
        while True:
            out = host.run(
                [
                    "docker",
                    "service",
                    "ps",
                    CHECK_SERVICE,
                    "--format",
                    "{{.Node}} {{.CurrentState}} {{.Error}}",
                ]
            ).stdout
            done = sorted(
                {line.split()[0] for line in out.splitlines() if " Complete " in f"{line} "}
            )
            if len(done) >= want:
                return Verified(f"{image} pulled and run on {len(done)} nodes: {', '.join(done)}")
            if time.monotonic() > deadline:
                raise RunbookError(
                    f"{image} ran on {len(done)} of {want} nodes within {timeout:.0f} s:\n{out.strip()}"
                )
            time.sleep(0.5)
    finally:
        host.run(["docker", "service", "rm", CHECK_SERVICE], check=False)


# -- taking a host out of the swarm (notebook 11) ------------------------------------------


def _none_leaving(rb: Runbook) -> str | None:
    return None if rb.p.remove_nodes else "remove_nodes is empty: no host is taken out"


def _leaving_member(rb: Runbook) -> Member | None:
    """The node a leaving host is in this swarm, found by its own node ID when it answers,
    else by the address the first manager has for it (a host that already left, or is
    gone)."""
    listed = members(rb)
    if _reachable(rb):
        mine = swarm_of(rb)
        if mine.node_id in listed:
            return listed[mine.node_id]
    return next((m for m in listed.values() if m.addr == rb.target.address), None)


def _reachable(rb: Runbook) -> bool:
    """Whether the host answers over SSH (asked once per notebook: a host that is gone
    costs a connection timeout)."""
    if "reachable" not in rb.cache:
        try:
            rb.host.run(["true"])
            rb.cache["reachable"] = True
        except RunbookError:
            rb.cache["reachable"] = False
    return rb.cache["reachable"]


@step("Drain", skip=_none_leaving, each_host="leaving")
def drain(rb: Runbook) -> Found | Plan:
    """The swarm moves the node's tasks to the other nodes, and sends it no more."""
    m = _leaving_member(rb)
    if m is None:
        return Found("not in this swarm")
    if m.availability == "drain":
        return Found(f"node {m.id[:12]} ({m.hostname}) is drained")

    def moved(result: StepResult) -> None:
        _wait(rb, lambda: not _running_tasks(rb, m.id), 120, f"{m.hostname}'s tasks to move")

    return Plan(
        [Cmd(["docker", "node", "update", "--availability", "drain", m.id])],
        changed=f"node {m.id[:12]} ({m.hostname}) drained: its tasks run elsewhere now",
        warnings=[
            f"what services kept in local volumes on {rb.target.name} stays there and is not "
            "moved with their tasks; copy it first if it matters (the registry's own storage "
            "is on the first manager)"
        ],
        on=rb.main.host,
        after=moved,
    )


def _running_tasks(rb: Runbook, node: str) -> list[str]:
    out = rb.main.host.run(
        [
            "docker",
            "node",
            "ps",
            node,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}}",
        ],
        check=False,
    ).stdout
    return out.split()


def _wait(rb: Runbook, done, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RunbookError(f"waited {timeout:.0f} s for {what}; run again to go on")
        time.sleep(0.5)


@step("Demote", skip=_none_leaving, each_host="leaving")
def demote(rb: Runbook) -> Found | Plan:
    """A manager becomes a worker before it leaves, so that the swarm's managers agree on it
    going (a manager that just leaves counts as one down, against the quorum)."""
    m = _leaving_member(rb)
    if m is None or m.role != "manager":
        return Found("not a manager" if m else "not in this swarm")
    left = sum(x.role == "manager" for x in members(rb).values()) - 1
    warnings = []
    if left % 2 == 0:
        warnings.append(
            f"{left} managers remain: an even number survives no more failures than "
            f"{left - 1}; demote or add one more"
        )
    return Plan(
        [Cmd(["docker", "node", "demote", m.id])],
        changed=f"node {m.id[:12]} ({m.hostname}) demoted to a worker",
        warnings=warnings,
        on=rb.main.host,
    )


@step("Leave", skip=_none_leaving, each_host="leaving")
def leave(rb: Runbook) -> Found | Plan:
    """``docker swarm leave`` on the host itself: it stops its tasks and forgets the swarm
    (its own copy of the swarm's secrets and configs is gone with it)."""
    if not _reachable(rb):
        return Found(
            f"{rb.target.name} does not answer: it cannot be asked to leave",
            warnings=[
                f"{rb.target.name} still believes it is in the swarm: when it is back, run "
                "'docker swarm leave' on it"
            ],
        )
    mine = swarm_of(rb)
    if mine.state in ("inactive", ""):
        return Found("in no swarm")
    return Plan(
        [Cmd(["docker", "swarm", "leave"])],
        changed="left the swarm",
    )


@step("Remove from the node list", skip=_none_leaving, each_host="leaving")
def remove(rb: Runbook) -> Found | Plan:
    """``docker node rm`` on the first manager, once the node is down (it left); a host that
    no longer answers is removed with ``--force``."""
    m = _leaving_member(rb)
    if m is None:
        return Found("not in the first manager's node list")
    gone = not _reachable(rb)
    if not gone and not rb.dry_run:
        _wait(rb, lambda: _state(rb, m.id) == "down", 60, f"{m.hostname} to be down")
    return Plan(
        [Cmd(["docker", "node", "rm", *(["--force"] if gone else []), m.id])],
        changed=f"node {m.id[:12]} ({m.hostname}) removed from the swarm",
        on=rb.main.host,
    )


def _state(rb: Runbook, node: str) -> str:
    m = members(rb).get(node)
    return m.state if m else "gone"
