"""The run's hosts: for each host of the swarm, how to reach it and one connection to it.

The notebooks of a run execute one after another in one kernel (:mod:`runbook_lib.kernel`),
so what they share lives at the kernel's level, here: one :class:`~runbook_lib.hosts.SSHHost`
per host, which reconnects by itself when dropped and keeps its facts
(:mod:`runbook_lib.facts` keeps them per host). A notebook's :class:`Runbook` asks its
:class:`Session` for the first manager (``rb.host``) or for every host (:meth:`Session.each`).

The first manager is the parameter ``host``; the others are ``nodes``, each taking what it
leaves out (SSH user, port, key, sudo password) from the top-level parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .hosts import SSHHost
from .params import Params
from .secrets import Secret

T = TypeVar("T")

#: Hosts worked on at once. SSH connections are cheap; what the hosts then do (apt, pulls)
#: competes for the network they share, and four keeps a slow host from holding up many.
PARALLEL = 4


@dataclass(frozen=True)
class Target:
    """One host of the swarm, and how the runbook reaches it."""

    address: str
    role: str  # manager or worker
    first: bool  # the first manager: where the swarm starts and the registry runs
    ssh_port: int
    ssh_user: str
    ssh_key_file: str | None
    sudo_password: Secret | None = field(default=None, compare=False)
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """How results name the host: its address, with the port when it is not 22."""
        return self.address if self.ssh_port == 22 else f"{self.address}:{self.ssh_port}"


def targets(p: Params) -> list[Target]:
    """The first manager, then ``nodes`` in their order, with the top-level values filled in."""
    first = Target(p.host, "manager", True, p.ssh_port, p.ssh_user, p.ssh_key_file, p.sudo_password)
    return [first] + [
        Target(
            n.address,
            n.role,
            False,
            n.ssh_port or p.ssh_port,
            n.ssh_user or p.ssh_user,
            n.ssh_key_file or p.ssh_key_file,
            n.sudo_password or p.sudo_password,
            tuple(sorted(n.labels.items())),
        )
        for n in p.nodes
    ]


# Connections by what they connect to, for the kernel's life: a notebook's session and the
# next notebook's share them. Guarded: the notebook and the background reads may both ask.
_CONNECTIONS: dict[tuple, SSHHost] = {}
_LOCK = threading.Lock()


class Session:
    """A run's parameters and its hosts."""

    def __init__(self, p: Params):
        self.p = p
        self.targets = targets(p)
        # Hosts to take out of the swarm (notebook 11), reached with the top-level values.
        self.leaving = [
            Target(a, "worker", False, p.ssh_port, p.ssh_user, p.ssh_key_file, p.sudo_password)
            for a in p.remove_nodes
        ]

    @property
    def first(self) -> Target:
        return self.targets[0]

    def host(self, target: Target | None = None) -> SSHHost:
        """The connection to ``target`` (the first manager by default); it connects on
        first use."""
        t, p = target or self.first, self.p
        key_file = str(Path(t.ssh_key_file).expanduser()) if t.ssh_key_file else None
        secrets = tuple(s.ref if s else None for s in (p.ssh_password, t.sudo_password))
        key = (
            t.address,
            t.ssh_port,
            t.ssh_user,
            key_file,
            p.known_hosts,
            p.trust_unknown_host_key,
            secrets,
        )
        with _LOCK:
            if key not in _CONNECTIONS:
                _CONNECTIONS[key] = SSHHost(
                    t.address,
                    port=t.ssh_port,
                    user=t.ssh_user,
                    key_file=key_file,
                    password=p.ssh_password,
                    sudo_password=t.sudo_password,
                    known_hosts=p.known_hosts,
                    trust_unknown_host_key=p.trust_unknown_host_key,
                    timeout=p.ssh_timeout,
                )
            return _CONNECTIONS[key]

    def each(
        self,
        fn: Callable[[Target], T],
        targets: list[Target] | None = None,
        *,
        parallel: int = PARALLEL,
    ) -> list[tuple[Target, T | BaseException]]:
        """``fn(target)`` for every host (or those given), at most ``parallel`` at once;
        each host's value or the exception it raised, in the hosts' order. One host's
        failure does not stop the others: the caller decides what it means."""
        chosen = self.targets if targets is None else targets
        if not chosen:
            return []
        if len(chosen) == 1:
            return [(chosen[0], _call(fn, chosen[0]))]
        with ThreadPoolExecutor(
            max_workers=min(parallel, len(chosen)), thread_name_prefix="runbook-host"
        ) as pool:
            done = [pool.submit(_call, fn, t) for t in chosen]
            return [(t, f.result()) for t, f in zip(chosen, done, strict=True)]


def _call(fn: Callable[[Target], Any], target: Target) -> Any:
    try:
        return fn(target)
    except Exception as exc:  # noqa: BLE001 (returned to the caller, which reports it)
        return exc
