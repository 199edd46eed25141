"""The registry service (tutorial: 运行仓库服务): stack file, deploy, wait until it answers.

The stack file is rendered by :mod:`runbook_lib.stackfile` (see there for what changed from
the tutorial's ``docker-compose.yml``) and written to ``WORK_DIR/docker-compose.yml``.
"""

from __future__ import annotations

import re
import shlex
import ssl
import time

from . import probe, progress, stackfile
from .certs import ca_pem, layout
from .context import Runbook
from .errors import MissingInput, RunbookError, WaitTimeout
from .steps import Call, Cmd, Done, Found, Outcome, Plan, Verified, path_states, plan_file, step
from .users import htpasswd_path


def _not_yet(rb: Runbook, what: str, exc: MissingInput) -> Plan:
    """In a dry run, a step whose inputs earlier notebooks would make is simply to do."""
    if not rb.dry_run:
        raise exc
    return Plan([Call(what, lambda _host: None)], f"to do once notebooks 05 and 06 ran ({exc})")


_OUR_SECRET = re.compile(r"^registry_(cert|key|htpasswd)_[0-9a-f]{12}$")


def stack_path(rb: Runbook) -> str:
    return layout(rb).stack_file


def wanted_stack(rb: Runbook) -> stackfile.RegistryStack:
    """The stack for the current parameters and the files on the host (read once)."""
    if "stack" not in rb.cache:
        rb.cache["stack"] = _wanted_stack(rb)
    return rb.cache["stack"]


def _wanted_stack(rb: Runbook) -> stackfile.RegistryStack:
    p, lay = rb.p, layout(rb)
    files = [lay.cert, lay.key, htpasswd_path(rb)]
    states = path_states(rb.host, *files)
    missing = [f for f, s in zip(files, states, strict=True) if not s.exists]
    if missing:
        raise MissingInput(
            f"missing {', '.join(missing)}: run notebooks 05 (TLS) and 06 (users) first"
        )
    cert, key, users = (s.sha256[:12] for s in states)
    stack = stackfile.RegistryStack(
        stack=p.stack_name,
        image=p.registry_image,
        port=p.registry_port,
        publish_mode=p.registry_publish_mode,
        cert_file=lay.cert,
        key_file=lay.key,
        htpasswd_file=htpasswd_path(rb),
        cert_digest=cert,
        key_digest=key,
        htpasswd_digest=users,
        placement=placement(rb),
        storage_delete=p.registry_storage_delete,
    )
    return stackfile.with_digest(stack)


def placement(rb: Runbook) -> tuple[str, ...]:
    """Where the registry runs. Its storage is a local volume of the node it runs on: with
    one manager, the tutorial's "a manager" is that node; with several, the registry is
    pinned to the first manager, or a move to another would leave its images behind."""
    node = rb.facts().swarm.node_id
    if rb.p.managers == 1 or not node:  # no swarm yet (check mode): shown as for one
        return ("node.role == manager",)
    return (f"node.id == {node}",)


@step("Stack file")
def stack_file(rb: Runbook) -> Plan:
    path = stack_path(rb)
    try:
        stack = wanted_stack(rb)
    except MissingInput as exc:
        return _not_yet(rb, f"write {path}", exc)
    (state,) = path_states(rb.host, path)
    return Plan(
        plan_file(state, path, stackfile.render(stack), 0o644, host=rb.host),
        changed=f"{path} written",
        unchanged=f"{path} is up to date",
    )


def _service(rb: Runbook, verb: str, *args: str):
    """``docker service VERB STACK_registry ARGS``, as a probe (a missing service is no error)."""
    return rb.host.run(["docker", "service", verb, rb.names.registry_service, *args], check=False)


# The service's stack digest ("<no service>" when there is none), then every secret's name
# (none when the swarm is not active: a dry run before notebook 04 ran).
_DEPLOYED = r"""
docker service inspect --format "$2" "$1" 2>/dev/null || echo '<no service>'
echo '== secrets'
docker secret ls --format '{{.Name}}' 2>/dev/null || true
"""

# Each service and the secrets it names, one service a line.
_IN_USE = r"""
docker service ls -q | xargs -r docker service inspect \
  --format '{{.Spec.Name}} {{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}'
"""


# Set on the service (not in the stack file) while notebooks 14 and 15 need the registry
# read-only; it does not change the stack digest label, so the deploy looks for it itself.
MAINTENANCE_ENV = "REGISTRY_STORAGE_MAINTENANCE_READONLY"


def deployed(rb: Runbook) -> tuple[str | None, list[str], int | None, bool]:
    """The stack digest the running service was deployed from ("" when it has none, as a
    service from an older runbook or from the tutorial; None when there is no service), the
    names of the swarm's secrets, the replicas the service asks for (someone may have
    scaled it by hand), and whether it was left read-only (an interrupted garbage
    collection or backup, see :mod:`runbook_lib.storage`)."""
    label = (
        f'{{{{.Spec.Mode.Replicated.Replicas}}}} {{{{index .Spec.Labels "{stackfile.STACK_LABEL}"}}}}'
        f' {{{{range .Spec.TaskTemplate.ContainerSpec.Env}}}}{{{{if eq (index (split . "=") 0)'
        f' "{MAINTENANCE_ENV}"}}}}read-only{{{{end}}}}{{{{end}}}}'
    )
    out = rb.host.sh(
        _DEPLOYED,
        rb.names.registry_service,
        label,
        display=f"docker service inspect {rb.names.registry_service}; docker secret ls",
    ).stdout
    head, _, secrets = out.partition("== secrets\n")
    if head.strip() == "<no service>":
        return None, secrets.split(), None, False
    replicas, digest, read_only = (head.split() + ["", "", ""])[:3]
    if digest == "read-only":  # a service without the label
        digest, read_only = "", digest
    count = int(replicas) if replicas.isdigit() else None
    return digest, secrets.split(), count, read_only == "read-only"


def plan_deploy(
    current: str | None,
    stack: stackfile.RegistryStack,
    replicas: int | None = None,
    read_only: bool = False,
) -> list:
    """Deploy when the service is missing, was deployed from another stack file, or was
    left read-only.

    The stack reaches Docker on standard input (``--compose-file -``), as rendered here: the
    copy in WORK_DIR is the operator's record, never what root deploys, so nobody can swap
    it between its check and the deploy."""
    if current == stack.stack_digest and replicas in (None, stack.replicas) and not read_only:
        return []  # a service scaled by hand (to 0, say) is deployed again
    argv = ["docker", "stack", "deploy", "--compose-file", "-", stack.stack]
    return [Cmd(argv, stdin=stackfile.render(stack), timeout=900)]


def old_secrets(
    names: list[str], stack: stackfile.RegistryStack, used_elsewhere: set[str]
) -> list[str]:
    """The runbook's secrets the stack no longer uses (earlier certificates, users), unless
    another service uses them (another registry stack on the same swarm)."""
    keep = set(stackfile.secret_names(stack)) | used_elsewhere
    return [n for n in names if _OUR_SECRET.match(n) and n not in keep]


def _used_by_other_services(rb: Runbook) -> set[str]:
    out = rb.host.sh(_IN_USE, display="the secrets each service names", check=False).stdout
    ours = rb.names.registry_service
    return {
        secret
        for line in out.splitlines()
        if line.split(" ", 1)[0] != ours
        for secret in line.split()[1:]
    }


@step("Registry service")
def deploy(rb: Runbook) -> Outcome:
    try:
        stack = wanted_stack(rb)
    except MissingInput as exc:
        return _not_yet(rb, f"docker stack deploy {rb.p.stack_name}", exc)
    current, secrets, replicas, read_only = deployed(rb)
    plan = plan_deploy(current, stack, replicas, read_only)
    # Secrets of earlier versions go once the stack no longer names them: right after a
    # deploy, or on a later run. Which services name which secrets is asked only when
    # there are candidates: most runs have none.
    old = old_secrets(secrets, stack, set())
    if old:
        old = old_secrets(secrets, stack, _used_by_other_services(rb))
    service = f"service {rb.names.registry_service}"
    rm = ["docker", "secret", "rm", *old]
    if plan:
        if old:
            # Docker may refuse one a task of the rolling update still holds: a later run
            # removes it.
            plan.append(Call(shlex.join(rm), lambda h: h.run(rm, check=False)))
        why = (
            "deployed"
            if current is None
            else "updated (the stack file changed)"
            if current != stack.stack_digest
            else f"scaled back to {stack.replicas} (it asked for {replicas})"
            if replicas != stack.replicas
            else f"made writable again ({MAINTENANCE_ENV} was left set on it)"
        )
        return Plan(plan, changed=f"{service} {why}")
    running = f"{service} runs from the current stack file ({stack.image})"
    if not old:
        return Found(running)
    if rb.dry_run:
        return Plan([Cmd(rm)], changed=f"{running}; old secrets to remove")
    # Reported as Docker answers: a secret still in use stays, and is not a change.
    removed = [n for n in rb.host.run(rm, check=False).stdout.split() if n in old]
    if not removed:
        return Found(f"{running}; secrets of earlier versions still in use")
    return Done(
        f"{running}; secrets of earlier versions removed",
        [shlex.join(["docker", "secret", "rm", *removed])],
    )


def first_user(rb: Runbook) -> tuple[str, str]:
    user, ref = next(iter(rb.p.registry_users.items()))
    return user, ref.reveal()


# Task errors that waiting will not cure.
_HOPELESS = ("No such image", "pull access denied", "manifest unknown", "invalid reference")


def task_state(rb: Runbook) -> str:
    """The newest task's state and error, e.g. ``Rejected 3 seconds ago: No such image``."""
    r = _service(rb, "ps", "--no-trunc", "--format", "{{.CurrentState}}|{{.Error}}")
    lines = r.stdout.splitlines() or ["no task yet|"]
    # The newest task may just be starting again: show the newest error, if any.
    failed = [line for line in lines if line.partition("|")[2].strip()]
    state, _, error = (failed or lines)[0].partition("|")
    return f"{state}: {error}" if error else state


def update_state(rb: Runbook) -> str:
    """The service's rolling update: "" (none), updating, completed, rollback_..."""
    r = _service(rb, "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}")
    return r.stdout.strip()


# The service's image and secrets as Docker stored them, then each running task's: the
# same fields, so no image name needs normalising (Docker pins a digest and rewrites names).
_TASKS = r"""
fields='{{.Spec.ContainerSpec.Image}} {{range .Spec.ContainerSpec.Secrets}}{{.SecretName}} {{end}}'
docker service inspect --format "service {{.Spec.TaskTemplate.ContainerSpec.Image}} \
{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}" "$1"
docker service ps -q --filter desired-state=running "$1" | xargs -r docker inspect \
  --format "{{.Status.State}} $fields"
"""


def runs_current(tasks: str, stack: stackfile.RegistryStack) -> bool:
    """Whether the service's running tasks run its current spec: the image, and the
    certificate and users, whose secrets are named after their content and must be the
    stack's. Right after a deploy the old task is still the one Docker wants running, and
    may answer with the old users, until the update starts; it fails this. Tasks not
    running yet (pending, starting) do not count."""
    rows = [line.split() for line in tasks.splitlines() if line.strip()]
    service = next((r[1:] for r in rows if r[0] == "service" and len(r) >= 2), None)
    running = [r[1:] for r in rows if r[0] == "running" and len(r) >= 2]
    if service is None or not running:
        return False
    wanted = set(stackfile.secret_names(stack))
    return wanted <= set(service[1:]) and all(
        t[0] == service[0] and set(t[1:]) == set(service[1:]) for t in running
    )


@step("Registry answers", check_only=True)
def wait_ready(rb: Runbook, timeout: float = 180.0) -> Verified:
    """Poll ``/v2/`` until it answers 401 without credentials and 200 with them, from the
    service's current task, showing progress every 5 s and giving up early when the task
    cannot start. The probe goes first (a few milliseconds); Docker is asked about the
    service when the probe succeeds, and once a second otherwise."""
    with progress.activity("waiting for the registry", total=timeout, unit="s", quiet=1) as act:
        return _poll_ready(rb, timeout, act)


def _poll_ready(rb: Runbook, timeout: float, act: progress.Activity) -> Verified:
    p, ca = rb.p, ca_pem(rb)
    start, last, shown, asked = time.monotonic(), "nothing yet", 0.0, 0.0
    checked = float("-inf")  # when the task that answered was last found not current
    untrusted_since = None  # a certificate ca.crt does not verify
    while True:
        try:
            anon = probe.https_get(rb.host, p.registry_port, p.registry_host, ca)
            if anon.status == 401:
                auth = probe.https_get(
                    rb.host, p.registry_port, p.registry_host, ca, auth=first_user(rb)
                )
                # Whether the task that answers is the current one is asked at most once a
                # second (two commands, several Docker API calls).
                if auth.status == 200 and time.monotonic() - checked >= 1:
                    if _settled(rb):
                        waited = time.monotonic() - start
                        return Verified(
                            f"https://{p.registry}/v2/ answers 401 without and 200 with "
                            "credentials" + (f" (after {waited:.0f} s)" if waited >= 1 else "")
                        )
                    checked = time.monotonic()
                # Until an update starts, the old task still answers, with the old users.
                last = (
                    "a task not yet running the current stack answers (its update is due)"
                    if auth.status == 200
                    else f"{auth.status} with the credentials of {first_user(rb)[0]!r}"
                )
            else:
                last = f"{anon.status} without credentials (expected 401)"
            untrusted_since = None
        except ssl.SSLCertVerificationError as exc:
            last = str(exc)
            untrusted_since = untrusted_since or time.monotonic()
            if time.monotonic() - untrusted_since > 5 and _settled(rb):
                # The current task serves a certificate the clients will refuse: waiting
                # does not cure that.
                raise RunbookError(
                    f"the registry on port {p.registry_port} presents a certificate that "
                    f"{layout(rb).ca_cert} does not verify ({exc.verify_message}). Another "
                    "server may hold the port, or the files changed outside the runbook: "
                    "run notebooks 05 and 07 again."
                ) from None
        except OSError as exc:
            last = str(exc)
            untrusted_since = None
        waited = time.monotonic() - start
        if waited - asked >= 1:
            update_state_ok(rb)
            asked = waited
        if waited - shown >= 5 or waited > timeout:
            task = task_state(rb)
            if waited > timeout or any(h in task for h in _HOPELESS):
                raise WaitTimeout(
                    f"the registry did not answer after {waited:.0f} s; last seen: {last}; "
                    f"its task: {task}. See `docker service ps --no-trunc "
                    f"{rb.names.registry_service}` on the host."
                )
            act.update(f"{last}; task: {task}")
            shown = waited
        act.update(n=max(0.0, min(waited, timeout) - act.count))
        # A registry usually answers within a second or two of its deploy: poll briskly.
        time.sleep(0.05 if waited < 10 else 0.5)


def update_state_ok(rb: Runbook) -> str:
    """The service's update state; an error when Docker stopped or rolled back the update
    to the current stack. A rollback to the current stack (a later run put the parameters
    back) is how the service should be."""
    update = update_state(rb)
    stopped = update == "paused" or update.startswith("rollback")
    going_back = update in ("rollback_started", "rollback_completed")
    if going_back and deployed(rb)[0] == wanted_stack(rb).stack_digest:
        stopped = False  # back to what the parameters say: wait for it as for any task
    if stopped:
        back = (
            "; Docker went back to the registry's previous version, which still serves"
            if update == "rollback_completed"
            else ""
        )
        raise RunbookError(
            f"Docker stopped the registry's update ({update}): its new task failed: "
            f"{task_state(rb)}{back}. See `docker service ps --no-trunc "
            f"{rb.names.registry_service}` on the host."
        )
    return update


def _settled(rb: Runbook) -> bool:
    """Whether what answers is the service's current task."""
    update_state_ok(rb)
    name = rb.names.registry_service
    tasks = rb.host.sh(_TASKS, name, display=f"docker service ps {name}", check=False).stdout
    return runs_current(tasks, wanted_stack(rb))


def _no_image_archive(rb: Runbook) -> str | None:
    if rb.p.registry_image_archive:
        return None
    return "registry_image_archive is not set: Docker pulls registry_image"


def _short(ref: str) -> str:
    """An image reference without Docker Hub's implied prefixes (and ``:latest`` added)."""
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        ref = ref.removeprefix(prefix)
    return ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"


@step("Registry image from an archive", skip=_no_image_archive)
def image_from_archive(rb: Runbook) -> Plan:
    """``registry_image`` loaded into the first manager's Docker from an archive on this
    machine, for a host that cannot pull it (no route to Docker Hub): the archive streamed
    over SSH into ``docker load``, decompressed here (Docker 20.10 cannot read zstd).
    ``ok`` when the host holds the archive's image under that name already (same image ID,
    the digest of its configuration)."""
    from . import archive
    from .errors import ParameterError

    p, path = rb.p, rb.p.registry_image_archive
    found = archive.read(path)  # a damaged archive is refused here, naming the file
    want = _short(p.registry_image)
    image = next((i for i in found.images if i.name and _short(i.name) == want), None)
    if image is None:
        names = ", ".join(sorted(i.name for i in found.images if i.name)) or "no named image"
        raise ParameterError(
            "registry_image_archive",
            path,
            f"does not hold registry_image {p.registry_image} (it holds: {names}); make it "
            f"with docker save {p.registry_image}",
        )
    # Docker's image ID: the configuration's digest (the manifest's, with containerd's store).
    ids = [b.digest for b in image.blobs if archive.is_config(b.media_type)] + [image.digest]
    r = rb.host.run(["docker", "image", "inspect", "--format", "{{.Id}}", want], check=False)
    if r.ok and r.stdout.strip() in ids:
        return Plan([], "", unchanged=f"{want} is the archive's image ({r.stdout.strip()[:19]})")

    def load(host) -> None:
        with archive.open_decompressed(path) as tar:
            host.stream(["docker", "load"], source=tar, display=f"docker load < {path}")

    return Plan(
        [Call(f"docker load < {path} (streamed over SSH)", load)],
        changed=f"{want} loaded from {path} ({image.size} bytes)",
    )
