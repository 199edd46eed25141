"""Who may reach the registry and the swarm: an allow-list in the host's firewall.

Docker publishes the registry's port, and dockerd listens on the swarm's ports (2377/tcp,
7946/tcp+udp, 4789/udp), on every interface, whatever the swarm's advertise address says.
With ``allow_from`` set, only those networks (and the host itself) reach them:

- one chain, ``RUNBOOK-ALLOW``: a ``RETURN`` for the host's own traffic and for each
  allowed network, then ``REJECT``;
- published ports (the registry's, Portainer's) jump to it from ``DOCKER-USER``, the chain
  Docker keeps for its users' rules and never rewrites. Docker has rewritten the
  destination port by then, so the rule matches the connection's original one, in the
  original direction only (Docker's "Restrict connections to the Docker host" recipe,
  docs/network/packet-filtering-firewalls.md);
- the swarm's ports jump to it from ``INPUT``: dockerd itself listens on them.

The whole chain is replaced in one ``iptables-restore --noflush`` transaction: there is no
moment with half a list. The rules live in the kernel: after a reboot, a run of the
runbook puts them back (or save them with the distribution's iptables-persistent).
An empty ``allow_from`` removes the chain and its jumps: nothing is restricted.
"""

from __future__ import annotations

import difflib

from .facts import sections
from .steps import Cmd

CHAIN = "RUNBOOK-ALLOW"
SWARM_TCP = "2377,7946"
SWARM_UDP = "7946,4789"


def chain_rules(allow: list[str]) -> list[str]:
    """The chain, as ``iptables -S`` prints it; networks in their canonical form."""
    if not allow:
        return []
    return [
        f"-N {CHAIN}",
        f"-A {CHAIN} -i lo -j RETURN",
        *(f"-A {CHAIN} -s {net} -j RETURN" for net in allow),
        f"-A {CHAIN} -j REJECT --reject-with icmp-port-unreachable",
    ]


def jumps(allow: list[str], published: list[int]) -> dict[str, list[str]]:
    """The jumps to the chain, by the chain they sit in."""
    if not allow:
        return {"DOCKER-USER": [], "INPUT": []}
    return {
        "DOCKER-USER": [
            f"-A DOCKER-USER -p tcp -m conntrack --ctorigdstport {port} --ctdir ORIGINAL -j {CHAIN}"
            for port in sorted(set(published))
        ],
        "INPUT": [
            f"-A INPUT -p tcp -m multiport --dports {SWARM_TCP} -j {CHAIN}",
            f"-A INPUT -p udp -m multiport --dports {SWARM_UDP} -j {CHAIN}",
        ],
    }


def ours(lines: list[str]) -> list[str]:
    """The lines of ``iptables -S`` output that are the runbook's: its chain, its jumps."""
    return [line for line in lines if CHAIN in line.split()]


def parse(text: str) -> dict[str, list[str]]:
    """``== NAME`` sections of ``iptables -S NAME`` output (an absent chain: no lines)."""
    return sections(text)


def current_rules(state: dict[str, list[str]]) -> list[str]:
    """The runbook's rules now: its chain in order, then its jumps (sorted: their order
    does not matter)."""
    return state.get(CHAIN, []) + sorted(
        ours(state.get("DOCKER-USER", [])) + ours(state.get("INPUT", []))
    )


def wanted_rules(allow: list[str], published: list[int]) -> list[str]:
    j = jumps(allow, published)
    return chain_rules(allow) + sorted(j["DOCKER-USER"] + j["INPUT"])


def diff(state: dict[str, list[str]], allow: list[str], published: list[int]) -> str:
    return "".join(
        difflib.unified_diff(
            [f"{line}\n" for line in current_rules(state)],
            [f"{line}\n" for line in wanted_rules(allow, published)],
            "iptables -S (before)",
            "iptables -S",
        )
    )


def plan(state: dict[str, list[str]], allow: list[str], published: list[int]) -> list[Cmd]:
    """One ``iptables-restore --noflush`` that makes the rules what they should be; none
    when they are."""
    if current_rules(state) == wanted_rules(allow, published):
        return []
    have = {c: ours(state.get(c, [])) for c in ("DOCKER-USER", "INPUT")}
    want = jumps(allow, published)
    lines = ["*filter"]
    # Stale jumps go first: a chain that is still jumped to cannot be deleted.
    for c in ("DOCKER-USER", "INPUT"):
        lines += ["-D" + rule[2:] for rule in have[c] if rule not in want[c]]
    if allow:
        lines.append(f":{CHAIN} - [0:0]")  # declared: created, or emptied if it exists
        lines += chain_rules(allow)[1:]
        for c in ("DOCKER-USER", "INPUT"):
            # At the top, before Docker's own rules and any ACCEPT in INPUT.
            lines += [
                f"-I {c} 1" + rule[len(f"-A {c}") :] for rule in want[c] if rule not in have[c]
            ]
    elif state.get(CHAIN):
        lines += [f"-F {CHAIN}", f"-X {CHAIN}"]
    lines.append("COMMIT")
    return [Cmd(["iptables-restore", "--noflush"], stdin="\n".join(lines) + "\n")]


READ = f"""
for c in {CHAIN} DOCKER-USER INPUT; do
  echo "== $c"
  iptables -S "$c" 2>/dev/null || true
done
"""
