"""Teardown (notebook 17, on demand): take down what the runbook built, leave Docker installed.

In this order, each step looking before it acts, so that a second run finds nothing to do:

1. the confirmation: ``teardown_confirm`` must be ``host`` typed again, or nothing changes
   (in check mode, left unset, the plan is shown and a warning says the run would refuse);
2. the Portainer stack and the registry's stack (``docker stack rm``), waited for until their
   services, their tasks' containers on every host and their networks are gone;
3. the registry's swarm secrets (``registry_cert_*``, ``registry_key_*``,
   ``registry_htpasswd_*``) that the stack left;
4. the swarm: the workers leave, then the other managers (demoted first), then the first
   manager ends the swarm (``docker swarm leave --force``): its join tokens, secrets,
   configs and services are gone with it;
5. the firewall's chain ``RUNBOOK-ALLOW`` and its jumps, on every host;
6. Docker's trust for the registry (``/etc/docker/certs.d/NAME:PORT/ca.crt`` and
   ``previous-ca.crt``) on every host, and the work directory on the first manager;
7. the data volumes (the registry's images, Portainer's data) only with
   ``teardown_volumes: true``; otherwise they are kept, and the step says where.

Docker, its images and its configuration stay. Nothing on the machine running the runbook is
removed: the trust ``trust_on_runner`` installed, the local CA's key (``tls_ca_dir``), the
run folders; the last step says so.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from . import cluster, firewall, progress
from .certs import _TRUSTED as TRUSTED_LISTING
from .certs import PREVIOUS, layout, stale_trust
from .context import Runbook
from .errors import ParameterError, RunbookError
from .names import MIRROR_SERVICE, MIRROR_STACK, trust_dirs
from .params import Params, _node_key
from .portainer import SECRET as PORTAINER_SECRET
from .registry import _OUR_SECRET
from .steps import Call, Cmd, Found, Plan, Skip, Verified, step

CONFIRM = "teardown_confirm"
NAMESPACE = "com.docker.stack.namespace"  # the label docker stack deploy puts on everything


# -- the confirmation ----------------------------------------------------------------------


def confirmation_problem(host: str, confirm: str | None, check_mode: bool) -> str | None:
    """Why the teardown may not go on (None when it may): ``confirm`` must name ``host``
    (the same address, or the same name in any case). Unset in check mode is accepted:
    the plan changes nothing."""
    if confirm is not None and _node_key(str(confirm).strip(), 0) == _node_key(host, 0):
        return None
    if confirm is None and check_mode:
        return None
    what = "is not set" if confirm is None else f"is not the value of host ({host!r})"
    return (
        f"{what}: notebook 17 takes the registry, its swarm and their files down on {host} "
        f"and the swarm's other hosts only when teardown_confirm is host typed again; nothing "
        f"was changed. Set it, then run again"
    )


def require_confirmation(p: Params) -> None:
    """Refuse, naming ``teardown_confirm`` and the fix, before anything changes. Every step
    that changes something asks again: a notebook's cells can be run in any order."""
    problem = confirmation_problem(p.host, p.teardown_confirm, p.check_mode)
    if problem:
        raise ParameterError(CONFIRM, p.teardown_confirm, problem, f"{CONFIRM}: {p.host}")


@step("Confirmation")
def confirm(rb: Runbook) -> Verified | Found:
    """``teardown_confirm`` names the host; what the swarm holds now, which is lost."""
    require_confirmation(rb.p)
    mine = cluster.swarm_of(rb)
    details = {}
    warnings = []
    if mine.state == "active" and mine.is_manager:
        services = _lines(rb, ["docker", "service", "ls", "--format", "{{.Name}}"])
        ours = {
            rb.names.registry_service,
            rb.names.portainer_service,
            rb.names.agent_service,
            MIRROR_SERVICE,
        }
        details = {
            "nodes": len(cluster.members(rb)),
            "services": ", ".join(services) or "none",
        }
        theirs = [s for s in services if s not in ours]
        if theirs:
            warnings.append(
                f"services the runbook did not make are in the swarm and end with it: "
                f"{', '.join(theirs)}"
            )
    if rb.p.teardown_confirm is None:  # check mode: see the plan first
        return Found(
            f"check mode: the plan for {rb.p.host}",
            details,
            warnings
            + [f"a real run refuses until {CONFIRM}: {rb.p.host} is set (host, typed again)"],
        )
    return Verified(
        f"{CONFIRM} is host ({rb.p.host}): the registry and the swarm are taken down",
        details,
        warnings,
    )


def _lines(rb: Runbook, argv: list[str]) -> list[str]:
    out = rb.host.run(argv, check=False)
    return out.stdout.split() if out.ok else []


# -- the stacks ----------------------------------------------------------------------------

_STACK = r"""
f="label=com.docker.stack.namespace=$1"
echo "== services"; docker service ls --filter "$f" --format '{{.Name}}'
echo "== networks"; docker network ls --filter "$f" --format '{{.Name}}'
echo "== secrets"; docker secret ls --filter "$f" --format '{{.Name}}'
echo "== configs"; docker config ls --filter "$f" --format '{{.Name}}'
"""
KINDS = ("services", "networks", "secrets", "configs")


@dataclass(frozen=True)
class StackObjects:
    """What of a stack the swarm still holds, by kind."""

    services: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    configs: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.services or self.networks or self.secrets or self.configs)

    def describe(self) -> str:
        shown = [f"{k} {', '.join(getattr(self, k))}" for k in KINDS if getattr(self, k)]
        return "; ".join(shown) or "nothing"


def parse_stack(text: str) -> StackObjects:
    """``_STACK``'s output: a ``== KIND`` line, then one name a line."""
    from .facts import sections

    found = sections(text)
    return StackObjects(**{k: tuple(found.get(k, [])) for k in KINDS})


def stack_objects(rb: Runbook, stack: str) -> StackObjects:
    return parse_stack(
        rb.host.sh(
            _STACK,
            stack,
            display=f"docker service/network/secret/config ls --filter label={NAMESPACE}={stack}",
        ).stdout
    )


def _containers(rb: Runbook, stack: str) -> dict[str, list[str]]:
    """The stack's task containers still on each host that answers, by host."""
    left: dict[str, list[str]] = {}

    def on(target) -> None:  # noqa: ANN001 (a session.Target)
        view = rb.on(target)
        out = view.host.run(
            ["docker", "ps", "-aq", "--filter", f"label={NAMESPACE}={stack}"], check=False
        )
        if out.ok and out.stdout.split():
            left[target.name] = out.stdout.split()

    for target, outcome in rb.session.each(on):
        if isinstance(outcome, BaseException) and cluster._reachable(rb.on(target)):
            raise outcome
    return left


def _wait_gone(rb: Runbook, stack: str, timeout: float = 180.0) -> None:
    """``docker stack rm`` returns before the tasks stop: wait until the stack's services,
    its containers on every host and its networks are gone. The CLI removes the networks
    right after the services and gives up on one still in use ("failed to remove some
    resources", docker/cli cli/command/stack/swarm/remove.go); those are removed here once
    the containers are gone."""
    deadline = time.monotonic() + timeout
    label = f"waiting for stack {stack} to be gone"
    with progress.activity(label, total=timeout, unit="s", quiet=1) as act:
        while True:
            left = stack_objects(rb, stack)
            containers = {} if left.services else _containers(rb, stack)
            if not left.services and not containers:
                if left.empty:
                    return
                for kind, names in (
                    ("network", left.networks),
                    ("secret", left.secrets),
                    ("config", left.configs),
                ):
                    if names:
                        rb.host.run(["docker", kind, "rm", *names], check=False)
            if time.monotonic() > deadline:
                held = "; ".join(f"{h}: {len(c)} container(s)" for h, c in containers.items())
                raise RunbookError(
                    f"stack {stack} not gone after {timeout:.0f} s: {left.describe()}"
                    f"{'; ' + held if held else ''}. Look with `docker stack ps {stack}` on "
                    f"{rb.host.name}, then run again"
                )
            act.update(left.describe() if not left.empty else "its tasks stop", n=1)
            time.sleep(1)


def _manager_or_nothing(rb: Runbook) -> str | None:
    """Why there is no swarm to ask (None when this host manages one)."""
    mine = cluster.swarm_of(rb)
    if mine.state in ("inactive", ""):
        return "no swarm on this host"
    if not mine.is_manager:
        raise RunbookError(
            f"{rb.host.name} is {mine.state} in a swarm but not a manager of it: host must "
            "be the first manager (notebook 04 made it)"
        )
    return None


def _remove_stack(rb: Runbook, stack: str, what: str) -> Found | Plan:
    require_confirmation(rb.p)
    none = _manager_or_nothing(rb)
    if none:
        return Found(f"{none}: no {what}")
    left = stack_objects(rb, stack)
    if left.empty:
        return Found(f"already removed: no {what} in the swarm")

    def remove(host) -> None:  # noqa: ANN001
        host.run(["docker", "stack", "rm", stack], check=False)  # what is left: see _wait_gone
        _wait_gone(rb, stack)

    return Plan(
        [
            Call(
                f"docker stack rm {stack}; wait until its services, tasks and networks "
                "are gone on every host",
                remove,
            )
        ],
        changed=f"{what} removed: {left.describe()}",
    )


@step("Portainer stack")
def portainer_stack(rb: Runbook) -> Found | Plan:
    """Portainer's stack (notebook 09), whether or not ``portainer_enabled`` is still set."""
    return _remove_stack(rb, rb.names.portainer_stack, "Portainer stack")


@step("Mirror stack")
def mirror_stack(rb: Runbook) -> Found | Plan:
    """The pull-through cache's stack (notebook 19), whether or not ``mirror_enabled`` is
    still set."""
    return _remove_stack(rb, MIRROR_STACK, "mirror stack")


@step("Registry stack")
def registry_stack(rb: Runbook) -> Found | Plan:
    """The registry's stack (notebook 07): its service, network and secrets."""
    return _remove_stack(rb, rb.names.stack, "registry stack")


_MIRROR_SECRET = re.compile(r"^mirror_(config|cert|key)_[0-9a-f]{12}$")


def our_secrets(names: list[str]) -> list[str]:
    """The swarm secrets that are the runbook's: the registry's and the cache's, named after
    their content, and Portainer's administrator password."""
    return sorted(
        n for n in names if _OUR_SECRET.match(n) or _MIRROR_SECRET.match(n) or n == PORTAINER_SECRET
    )


@step("Registry secrets")
def secrets(rb: Runbook) -> Found | Plan:
    """The registry's secrets the stack's removal left (earlier versions, still in use
    then, or made by hand); other secrets are not the runbook's and stay until the swarm
    ends."""
    require_confirmation(rb.p)
    none = _manager_or_nothing(rb)
    if none:
        return Found(f"{none}: its secrets went with it")
    left = our_secrets(_lines(rb, ["docker", "secret", "ls", "--format", "{{.Name}}"]))
    return Plan(
        [Cmd(["docker", "secret", "rm", *left])] if left else [],
        changed=f"removed {', '.join(left)}",
        unchanged="already removed: none of the runbook's secrets is in the swarm",
    )


# -- the swarm -----------------------------------------------------------------------------


@step("Workers leave", each_host=True)
def workers_leave(rb: Runbook) -> Found | Plan:
    """Each worker leaves first (notebook 11's step): the managers go on meanwhile, and
    nothing is left waiting for a manager that is gone."""
    require_confirmation(rb.p)
    other = _elsewhere(rb)
    if other:
        return other
    if cluster._reachable(rb) and cluster.swarm_of(rb).is_manager:
        return Found("a manager: it leaves after the workers")
    return cluster.leave.body(rb)


def ours_gone(managers: tuple[str, ...], first: str, advertised: str | None) -> bool:
    """Whether a host whose swarm's managers are ``managers`` (``ADDRESS:PORT``) was in the
    swarm of the first manager, which has ended: it names the first manager's address."""
    wanted = {a for a in (first, advertised) if a}
    return any(m.rsplit(":", 1)[0].strip("[]") in wanted for m in managers)


def _elsewhere(rb: Runbook) -> Found | None:
    """A host that is active in a swarm the first manager does not list is left as it is:
    the runbook does not take a host out of a swarm it did not make (see notebook 01)."""
    if not cluster._reachable(rb):
        return None
    mine = cluster.swarm_of(rb)
    if mine.state != "active":
        return None
    main = cluster.swarm_of(rb.main)
    if main.state == "active" and main.is_manager:
        if mine.node_id in cluster.members(rb):
            return None
    elif ours_gone(mine.managers, rb.session.first.address, rb.p.swarm_advertise_addr):
        return None  # was away when the swarm ended: it still believes in it
    known = ", ".join(mine.managers) or "unknown managers"
    return Found(
        "in another swarm: left as it is",
        warnings=[f"{rb.target.name} is in another swarm (managers {known}): not touched"],
    )


@step("Managers leave", each_host=True)
def managers_leave(rb: Runbook) -> Found | Plan:
    """Each manager other than the first is demoted on the first manager, then leaves: the
    managers that remain keep their quorum until the last one ends the swarm."""
    require_confirmation(rb.p)
    if rb.target.first:
        return Found("the first manager: it ends the swarm last")
    if not cluster._reachable(rb):
        return cluster.leave.body(rb)  # says so, with what to run when it is back
    mine = cluster.swarm_of(rb)
    if mine.state in ("inactive", ""):
        return Found("in no swarm")
    if _elsewhere(rb):
        return Found("in another swarm: left as it is (see the step before)")
    if not mine.is_manager:
        return Found("a worker: it leaves in the step before")
    node = mine.node_id

    def demote(_host) -> None:  # noqa: ANN001
        rb.main.host.run(["docker", "node", "demote", node])
        cluster._wait(rb, lambda: not cluster.swarm_of(rb).is_manager, 60, f"{node} demoted")

    return Plan(
        [
            Call(f"docker node demote {node} (on the first manager)", demote),
            Cmd(["docker", "swarm", "leave"]),
        ],
        changed=f"demoted, then left the swarm (node {node[:12]})",
    )


@step("Swarm")
def end_swarm(rb: Runbook) -> Found | Plan:
    """The first manager, the last in the swarm, ends it: ``docker swarm leave --force``
    (needed on the last manager). The swarm's state is gone: its join tokens, secrets,
    configs and services, and its node list."""
    require_confirmation(rb.p)
    mine = cluster.swarm_of(rb)
    if mine.state in ("inactive", ""):
        return Found("no swarm: nothing to leave")
    warnings = []
    if mine.is_manager:
        ours = {t.address.lower() for t in rb.session.targets}
        others = [
            m
            for m in cluster.members(rb).values()
            if m.id != mine.node_id
            and m.state == "ready"
            and not {m.addr, m.hostname.lower()} & ours
        ]
        if others:
            listed = ", ".join(f"{m.hostname} ({m.addr}, {m.role})" for m in others)
            warnings.append(
                f"still in the swarm, not among the runbook's hosts: {listed}; each keeps "
                "believing it is in a swarm: run 'docker swarm leave --force' on it"
            )
    return Plan(
        [Cmd(["docker", "swarm", "leave", "--force"])],
        changed="the swarm is gone: its join tokens, secrets and services with it",
        warnings=warnings,
    )


# -- what the runbook left on each host ----------------------------------------------------


@step("Firewall rules", each_host=True)
def firewall_rules(rb: Runbook) -> Found | Plan:
    """The chain ``RUNBOOK-ALLOW`` and its jumps from ``DOCKER-USER`` and ``INPUT``
    (notebook 04, ``allow_from``), in one ``iptables-restore`` transaction; Docker's own
    rules stay."""
    require_confirmation(rb.p)
    state = firewall.parse(
        rb.host.sh(firewall.READ, display="iptables -S (the runbook's rules)").stdout
    )
    plan = firewall.plan(state, [], [])
    if not plan:
        return Found(f"already removed: no {firewall.CHAIN} rules")
    return Plan(
        plan,
        changed=f"{firewall.CHAIN} and its jumps removed: anyone may connect",
        diffs=[{"path": "iptables (filter table)", "text": firewall.diff(state, [], [])}],
    )


# Each folder: "DIR yes|no", then the names it holds, one a line.
_TRUST_DIRS = r"""
for d in "$@"; do
  if [ -d "$d" ] && [ ! -L "$d" ]; then
    echo "== $d"
    ls -A -- "$d"
  fi
done
"""


def parse_trust_dirs(text: str) -> dict[str, list[str]]:
    """The folders that exist, with the names each holds."""
    from .facts import sections

    return sections(text)


def plan_untrust(found: dict[str, list[str]]) -> tuple[list[Cmd], list[str]]:
    """Remove the runbook's ca.crt and previous-ca.crt from each folder, then the folder
    when nothing else is in it. Returns the commands and the folders kept (with files the
    runbook did not put there, such as a client certificate)."""
    ours = ("ca.crt", PREVIOUS)
    plan: list[Cmd] = []
    kept = []
    for d, names in found.items():
        files = [f"{d}/{n}" for n in ours if n in names]
        if files:
            plan.append(Cmd(["rm", "-f", "--", *files]))
        if set(names) - set(ours):
            kept.append(d)
        else:
            plan.append(Cmd(["rmdir", "--", d]))
    return plan, kept


def _ca(rb: Runbook) -> bytes | None:
    """This registry's ca.crt, from the first manager's work directory while it is there."""
    main = rb.main
    if "teardown ca" not in main.cache:
        main.cache["teardown ca"] = main.host.get(layout(main).ca_cert)
    return main.cache["teardown ca"]


@step("Docker's trust for the registry", each_host=True)
def trust(rb: Runbook) -> Found | Plan:
    """``/etc/docker/certs.d/NAME:PORT/`` for every name of the registry (notebook 05), and
    the folders of an earlier port or name that hold this registry's ca.crt."""
    require_confirmation(rb.p)
    wanted = trust_dirs(rb.p.all_registry_names, rb.p.registry_port)
    ca = _ca(rb)
    stale = []
    if ca:
        listing = rb.host.sh(TRUSTED_LISTING, display="sha256sum /etc/docker/certs.d/*/ca.crt")
        stale = stale_trust(listing.stdout, ca, wanted)
    dirs = wanted + stale
    found = parse_trust_dirs(
        rb.host.sh(_TRUST_DIRS, *dirs, display=f"ls -A {' '.join(dirs)}").stdout
    )
    plan, kept = plan_untrust(found)
    shown = ", ".join(d.rsplit("/", 1)[1] for d in found) or "none"
    warnings = [
        f"{d} holds files the runbook did not put there: kept, without ca.crt" for d in kept
    ]
    if not plan:
        return Found(
            f"already removed: no ca.crt for {', '.join(d.rsplit('/', 1)[1] for d in wanted)}",
            warnings=warnings,
        )
    return Plan(plan, changed=f"Docker no longer trusts the registry: {shown}", warnings=warnings)


def plan_work_dir(
    work_dir: str, entries: list[str] | None, ours: set[str]
) -> tuple[list[Cmd], list[str]]:
    """Remove the work directory when it holds only what the runbook put there; else remove
    those entries and keep the folder with the others. ``entries`` is None when the folder
    does not exist. Returns the commands and the entries kept."""
    if entries is None:
        return [], []
    others = sorted(set(entries) - ours)
    if not others:
        return [Cmd(["rm", "-rf", "--one-file-system", "--", work_dir])], []
    mine = sorted(set(entries) & ours)
    if not mine:
        return [], others
    return [
        Cmd(["rm", "-rf", "--one-file-system", "--", *(f"{work_dir}/{e}" for e in mine)])
    ], others


_LIST = r"""
[ -d "$1" ] || { echo missing; exit 0; }
echo present
ls -A -- "$1"
"""


@step("Work directory")
def work_dir(rb: Runbook) -> Found | Plan:
    """The work directory on the first manager (notebooks 05 to 09): the registry's key,
    certificate and ca.crt, its password file, the stack files. Checked first like every
    notebook that touches it: only root may be able to change what is on its path."""
    require_confirmation(rb.p)
    lay = layout(rb)
    out = rb.host.sh(_LIST, lay.work_dir, display=f"ls -A {lay.work_dir}").stdout.split("\n")
    entries = [e for e in out[1:] if e] if out[0] == "present" else None
    files = (lay.certs, lay.auth, lay.stack_file, lay.portainer_stack_file, lay.mirror_stack_file)
    ours = {p.rsplit("/", 1)[1] for p in files} | {lay.mirror_config.rsplit("/", 2)[1]}
    plan, others = plan_work_dir(lay.work_dir, entries, ours)
    warnings = (
        [f"{lay.work_dir} kept: it holds what the runbook did not put there: {', '.join(others)}"]
        if others
        else []
    )
    if not plan:
        return Found(
            f"already removed: {lay.work_dir}" if entries is None else "nothing of the runbook's",
            warnings=warnings,
        )
    return Plan(
        plan,
        changed=f"{lay.work_dir} removed: the registry's key, certificate, users, stack files",
        warnings=warnings,
    )


_VOLUMES = r"""
for v in "$@"; do
  docker volume inspect --format '{{.Name}} {{.Mountpoint}}' "$v" 2>/dev/null || true
done
"""


def parse_volumes(text: str) -> dict[str, str]:
    """Volume name to mount point, from ``_VOLUMES``' output."""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def without_mirror(document: dict, mirror_url: str) -> dict:
    """``daemon.json`` without the runbook's cache in ``registry-mirrors`` (the key goes when
    nothing else is left in it); every other key and mirror as it was."""
    kept = [m for m in document.get("registry-mirrors", []) if m.rstrip("/") != mirror_url]
    out = {k: v for k, v in document.items() if k != "registry-mirrors"}
    if kept:
        out["registry-mirrors"] = kept
    return out


@step("Docker's registry mirrors", each_host=True)
def daemon(rb: Runbook) -> Found | Plan:
    """The cache (notebook 19) out of ``registry-mirrors`` in ``/etc/docker/daemon.json``;
    dockerd reloads the file on SIGHUP. Other keys and mirrors stay."""
    from .mirror import DAEMON_JSON, url

    require_confirmation(rb.p)
    raw = rb.host.get(DAEMON_JSON)
    try:
        current = json.loads(raw) if raw and raw.strip() else {}
    except ValueError:
        return Found(
            f"{DAEMON_JSON} is not valid JSON: left as it is",
            warnings=[
                f"{DAEMON_JSON} on {rb.host.name} is not valid JSON; dockerd will not start with it"
            ],
        )
    mirror = url(rb.p)
    if not isinstance(current, dict) or current == without_mirror(current, mirror):
        return Found(f"{mirror} is not in registry-mirrors")
    from .steps import path_states, plan_file

    (state,) = path_states(rb.host, DAEMON_JSON)
    text = json.dumps(without_mirror(current, mirror), indent=2) + "\n"
    plan = plan_file(state, DAEMON_JSON, text, 0o644, host=rb.host)
    plan.append(
        Cmd(["sh", "-c", "kill -HUP $(cat /var/run/docker.pid)"], shown="kill -HUP dockerd")
    )
    return Plan(plan, changed=f"{mirror} taken out of registry-mirrors; dockerd reloaded")


@step("Data volumes", each_host=True)
def volumes(rb: Runbook) -> Found | Plan:
    """The registry's images (``STACK_registry``) and Portainer's data
    (``portainer_portainer_data``), on the node that ran each: deleted only with
    ``teardown_volumes: true``. Kept, a later run's registry serves the same images."""
    require_confirmation(rb.p)
    names = [rb.names.registry_volume, rb.names.portainer_volume, rb.names.mirror_volume]
    found = parse_volumes(
        rb.host.sh(_VOLUMES, *names, display=f"docker volume inspect {' '.join(names)}").stdout
    )
    if not found:
        return Found("none here")
    shown = ", ".join(f"{v} ({path})" for v, path in found.items())
    if not rb.p.teardown_volumes:
        return Found(f"kept (teardown_volumes is false): {shown}")
    return Plan(
        [Cmd(["docker", "volume", "rm", *found])],
        changed=f"deleted: {shown}",
    )


@step("This machine")
def runner(rb: Runbook) -> Skip:
    """What the runbook keeps on the machine running it: never removed here."""
    kept = ["the run folders"]
    if rb.p.trust_on_runner:
        dirs = trust_dirs(rb.p.all_registry_names, rb.p.registry_port)
        kept.insert(0, f"Docker's trust for the registry ({', '.join(dirs)}: remove by hand)")
    if rb.p.tls_ca:
        kept.insert(0, f"the local CA's key in {rb.p.tls_ca_dir} (a new run reuses it)")
    return Skip(f"not removed here: {'; '.join(kept)}")
