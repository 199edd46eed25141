"""Registry users (tutorial: 生成帐号密码): the htpasswd file, without a shell script.

The tutorial's ``create-user.sh`` ran ``docker run --entrypoint htpasswd registry:2 -Bbn
USER PASSWORD``: registry images since 2.7.1 no longer ship ``htpasswd``, and the password
sat in a process's arguments. Here the bcrypt hash is made in the notebook's kernel (with
the ``bcrypt`` library) and the file travels to the host on SSH's standard input.
"""

from __future__ import annotations

from . import htpasswd, probe
from .certs import ca_pem, layout
from .context import Runbook
from .errors import ParameterError, RunbookError
from .steps import Plan, Verified, path_states, plan_file, step


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


def login_plan(
    listed: dict[str, int], removed: dict[str, bool]
) -> tuple[dict[str, str], list[str]]:
    """What the checks say, user by user: (a table for the record, problems). A listed user
    must get 200 from ``GET /v2/`` with its password; a removed user must be absent from the
    password file the registry runs with (``removed`` says whether it is still there: its
    password is not known, and any wrong password gets 401 anyway, so a login attempt
    would prove nothing)."""
    table: dict[str, str] = {}
    problems = []
    for user, status in listed.items():
        table[user] = "logs in (200)" if status == 200 else f"refused ({status})"
        if status != 200:
            problems.append(f"{user!r} is refused ({status}) with the password it was given")
    for user, present in removed.items():
        table[f"{user} (removed)"] = "still in the password file" if present else "gone"
        if present:
            problems.append(f"{user!r} was removed but is still in the password file")
    return table, problems


@step("Logins", check_only=True)
def logins(rb: Runbook) -> Verified:
    """Each user of ``registry_users`` logs in with its password, over TLS verified against
    the registry's CA, from the host, as ``docker login`` would; no user of
    ``registry_remove_users`` is left in the password file. Run after the registry's wait,
    which makes sure the task that answers runs the current stack, whose password-file
    secret is named after this file's content."""
    p, ca = rb.p, ca_pem(rb)

    def status(user: str, password: str) -> int:
        return probe.https_get(
            rb.host, p.registry_port, p.registry_host, ca, auth=(user, password)
        ).status

    listed = {user: status(user, ref.reveal()) for user, ref in p.registry_users.items()}
    raw = rb.host.get(htpasswd_path(rb)) or b""
    in_file = set(htpasswd.salvage(raw)[0]) if raw else set()
    removed = {user: user in in_file for user in p.registry_remove_users}
    table, problems = login_plan(listed, removed)
    if problems:
        raise RunbookError(
            f"https://{p.registry}/v2/: {'; '.join(problems)}. Run notebooks 06 and 07 (or 13) "
            "again; if it persists, the registry runs with another password file."
        )
    return Verified(
        f"{len(listed)} user(s) log in"
        + (f"; {len(removed)} removed user(s) gone from its password file" if removed else ""),
        details=table,
    )
