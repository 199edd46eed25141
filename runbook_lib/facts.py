"""Facts: read-only looks at the host, each a command plus a pure parser of its output.

The common facts are read in one round trip (:func:`gather`). Facts are kept per host
(:func:`shared`) while nothing changed it: the notebooks of one run share their host
connection, so a fact read in 01 serves 02, 03 and 04 too. Every step that changes the host
goes through :func:`runbook_lib.steps.apply`, which counts the change (``Host.changes``);
a fact read before the latest change is read again.

A slow fact a later notebook will need is read in the background from the moment the
common facts are first read (:data:`PREFETCH`): a module registers a function that starts
:func:`prefetch`, and the host works on it in parallel with the notebooks before.
"""

from __future__ import annotations

import json
import shlex
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .hosts import Host

T = TypeVar("T")

MAX_AGE = 60.0  # seconds a fact is trusted for, even with no change by the runbook

# host -> key -> (Host.changes when read, when read, the value or its future)
_KEPT: weakref.WeakKeyDictionary[Host, dict[str, tuple[int, float, Future]]] = (
    weakref.WeakKeyDictionary()
)
_BACKGROUND = ThreadPoolExecutor(max_workers=4, thread_name_prefix="runbook-facts")

#: Functions ``fn(host)`` called when the common facts are read, to start
#: :func:`prefetch` of what later notebooks will need.
PREFETCH: list[Callable[[Host], None]] = []


def shared(host: Host, key: str, read: Callable[[Host], T], *, refresh: bool = False) -> T:
    """``read(host)``, or what it gave before (or is giving, in the background) when nothing
    changed on the host since and it is not older than :data:`MAX_AGE`."""
    kept = _KEPT.setdefault(host, {})
    entry = kept.get(key)
    if refresh or entry is None or not _fresh(host, entry):
        done: Future = Future()
        try:
            done.set_result(read(host))
        except BaseException:
            kept.pop(key, None)
            raise
        entry = kept[key] = (host.changes, time.monotonic(), done)
    try:
        return entry[2].result()
    except BaseException:
        kept.pop(key, None)  # a failed background read is tried again next time
        raise


def prefetch(host: Host, key: str, read: Callable[[Host], Any]) -> None:
    """Start ``read(host)`` in the background for a later :func:`shared` of ``key``."""
    kept = _KEPT.setdefault(host, {})
    entry = kept.get(key)
    if entry is None or not _fresh(host, entry):
        kept[key] = (host.changes, time.monotonic(), _BACKGROUND.submit(read, host))


def _fresh(host: Host, entry: tuple[int, float, Future]) -> bool:
    changes, when, _ = entry
    return changes == host.changes and time.monotonic() - when < MAX_AGE


def prefetch_common(host: Host) -> None:
    """Start reading the common facts, and the registered prefetches, in the background."""
    for start in PREFETCH:
        start(host)
    prefetch(host, "common", gather)


def common(host: Host, *, refresh: bool = False) -> HostFacts:
    """The common facts (:func:`gather`), kept per host; when they are read, the registered
    prefetches start alongside."""
    entry = _KEPT.get(host, {}).get("common")
    if refresh or entry is None or not _fresh(host, entry):
        for start in PREFETCH:
            start(host)
    return shared(host, "common", gather, refresh=refresh)


# The engine's version, or nothing when no engine answers. The system's dockerd, running
# but not answering yet (starting, or busy just after a swarm leave), is given a few
# seconds: reading it as "no engine" would have the runbook start one. (Another dockerd, a
# rootless one, has no /var/run/docker.sock and is not waited for.)
DOCKER_SERVER_SH = r"""
for try in 1 2 3 4 5 6 7 8 9 10; do
  docker version --format '{{.Server.Version}}' 2>/dev/null && break
  test -S /var/run/docker.sock && pidof dockerd >/dev/null 2>&1 || break
  sleep 0.5
done
"""

# Each section starts with a marker line; a missing tool leaves its section empty.
_SCRIPT = (
    r"""
echo '== os-release'; cat /etc/os-release 2>/dev/null
echo '== arch'; uname -m
echo '== init'; cat /proc/1/comm 2>/dev/null; test -d /run/systemd/system && echo systemd-booted
echo '== docker-server'
"""
    + DOCKER_SERVER_SH
    + r"""
echo '== swarm'; docker info --format '{{json .Swarm}}' 2>/dev/null
echo '== compose'; docker compose version --short 2>/dev/null
echo '== addresses'; ip -o -4 addr show scope global 2>/dev/null | awk '{print $2, $4}'
echo '== listen'; ss -Hltn 2>/dev/null | awk '{print $4}'
echo '== disk'; df -Pk / /var 2>/dev/null | awk 'NR>1 {print $6, $4}'
echo '== end'
"""
)


@dataclass(frozen=True)
class OsRelease:
    id: str
    version_id: str
    id_like: tuple[str, ...]
    pretty: str
    codename: str = ""

    @property
    def family(self) -> str:
        """``debian`` (Debian, Ubuntu...), ``rhel`` (RHEL, CentOS, Rocky, Alma...) or ``other``."""
        ids = (self.id, *self.id_like)
        if any(i in ("debian", "ubuntu") for i in ids):
            return "debian"
        if any(i in ("rhel", "centos", "fedora", "rocky", "almalinux") for i in ids):
            return "rhel"
        return "other"

    @property
    def major(self) -> int:
        head = self.version_id.split(".")[0]
        return int(head) if head.isdigit() else 0


@dataclass(frozen=True)
class Swarm:
    state: str  # inactive, pending, active, error, locked, or "" when no docker
    node_id: str = ""
    node_addr: str = ""
    is_manager: bool = False
    nodes: int = 0


@dataclass(frozen=True)
class HostFacts:
    os: OsRelease
    arch: str
    init: str  # "systemd" when systemd runs the host, else the name of PID 1
    docker_server: str  # version of a running engine, "" when none answers
    swarm: Swarm
    compose: str
    addresses: tuple[tuple[str, str], ...] = ()  # (interface, IPv4), every one of each
    listening: tuple[str, ...] = ()
    free_kib: dict[str, int] = field(default_factory=dict)  # mount point -> free KiB

    def port_in_use(self, port: int) -> bool:
        return any(addr.rsplit(":", 1)[-1] == str(port) for addr in self.listening)


def gather(host: Host) -> HostFacts:
    """Read all common facts in one command."""
    return parse(host.sh(_SCRIPT, display="read host facts").stdout)


def read_swarm(host: Host) -> Swarm:
    """The swarm facts alone, to see a change just made."""
    out = host.run(["docker", "info", "--format", "{{json .Swarm}}"], check=False).stdout
    return parse_swarm(out.splitlines())


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            out[current] = []
        elif current is not None and line.strip():
            out[current].append(line.rstrip())
    return out


def parse_os_release(lines: list[str]) -> OsRelease:
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            parts = shlex.split(value) if value else [""]
            values[key.strip()] = parts[0] if parts else ""
    return OsRelease(
        id=values.get("ID", "unknown").lower(),
        version_id=values.get("VERSION_ID", ""),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        pretty=values.get("PRETTY_NAME", values.get("ID", "unknown")),
        # Ubuntu derivatives name the Ubuntu release they follow in UBUNTU_CODENAME.
        codename=values.get("UBUNTU_CODENAME") or values.get("VERSION_CODENAME", ""),
    )


def parse_swarm(lines: list[str]) -> Swarm:
    if not lines:
        return Swarm(state="")
    try:
        data = json.loads(lines[0])
    except json.JSONDecodeError:
        return Swarm(state="")
    return Swarm(
        state=data.get("LocalNodeState", ""),
        node_id=data.get("NodeID", ""),
        node_addr=data.get("NodeAddr", ""),
        is_manager=bool(data.get("ControlAvailable")),
        nodes=int(data.get("Nodes") or 0),
    )


def parse(text: str) -> HostFacts:
    s = sections(text)
    init_lines = s.get("init", [])
    init = (
        "systemd"
        if "systemd-booted" in init_lines
        else (init_lines[0] if init_lines else "unknown")
    )
    addresses = []
    for line in s.get("addresses", []):
        name, _, cidr = line.partition(" ")
        addresses.append((name, cidr.split("/")[0]))
    free = {}
    for line in s.get("disk", []):
        mount, _, kib = line.partition(" ")
        if kib.isdigit():
            free[mount] = int(kib)
    first = lambda key: (s.get(key) or [""])[0]  # noqa: E731
    return HostFacts(
        os=parse_os_release(s.get("os-release", [])),
        arch=first("arch"),
        init=init,
        docker_server=first("docker-server"),
        swarm=parse_swarm(s.get("swarm", [])),
        compose=first("compose"),
        addresses=tuple(addresses),
        listening=tuple(s.get("listen", [])),
        free_kib=free,
    )
