"""Registry users (tutorial: 生成帐号密码): the htpasswd file, without a shell script.

The tutorial's ``create-user.sh`` ran ``docker run --entrypoint htpasswd registry:2 -Bbn
USER PASSWORD``: registry images since 2.7.1 no longer ship ``htpasswd``, and the password
sat in a process's arguments. Here the bcrypt hash is made in the notebook's kernel (with
the ``bcrypt`` library) and the file travels to the host on SSH's standard input.
"""

from __future__ import annotations

from . import htpasswd
from .certs import layout
from .context import Runbook
from .errors import ParameterError
from .steps import Plan, path_states, plan_file, step


def htpasswd_path(rb: Runbook) -> str:
    return layout(rb).htpasswd


@step("Registry users")
def users(rb: Runbook) -> Plan:
    """Add, re-password and remove the users the parameters name; keep all others."""
    p, path = rb.p, htpasswd_path(rb)
    raw = rb.host.get(path)
    current, damaged = htpasswd.salvage(raw) if raw else ({}, [])
    wanted = {user: ref.reveal() for user, ref in p.registry_users.items()}
    entries, changes = htpasswd.plan_users(
        current, wanted, p.registry_remove_users, p.registry_bcrypt_cost
    )
    if not entries:
        raise ParameterError(
            "registry_users",
            {},
            "the registry would have no user and refuse everyone",
            "{admin: env:REGISTRY_PASSWORD}",
        )
    if damaged:
        changes.append(f"dropped {len(damaged)} damaged line(s)")
    data = htpasswd.render(entries) if changes or raw is None else raw
    (state,) = path_states(rb.host, path)
    names = ", ".join(entries)
    return Plan(
        plan_file(state, path, data, 0o600),
        changed=("; ".join(changes) or "file mode fixed")
        + f" ({len(entries)} user(s); notebook 07 restarts the registry with them)",
        unchanged=f"{len(entries)} user(s): {names}",
        warnings=[f"{path} was damaged: {'; '.join(damaged)}; rewritten without them"]
        if damaged
        else [],
    )
