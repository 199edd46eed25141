"""Verification (tutorial: 验证): run, tag, log in, push, remove, pull, as the tutorial did.

These steps check; they leave the host as they found it, so they report ``ok`` when the
check passes. The push and pull round trip proves the registry's storage; once the image is
in the registry, later runs (``verify_push: auto``) check the login and the registry's
content over TLS and skip the round trip, which the certificate and users, the parts that
change, do not need: notebook 07 has already checked them with every change. Logging in uses a throw-away Docker client configuration that is removed in
the same command, so the registry password is never stored on the host (``docker login``
would otherwise keep it, base64-encoded, in ``~/.docker/config.json``).
"""

from __future__ import annotations

from . import probe
from .certs import ca_pem
from .context import Runbook, step
from .engine import docker_run
from .errors import RunbookError
from .registry import first_user
from .steps import StepResult

# Runs "$4..." with a fresh DOCKER_CONFIG after logging in to "$3" as "$2"; the password
# comes on standard input. The configuration (and the stored login) is gone on exit.
_WITH_LOGIN = r"""
set -e
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf -- "$DOCKER_CONFIG"' EXIT
docker login --username "$1" --password-stdin "$2" >/dev/null
shift 2
"$@"
"""


def pushed_name(rb: Runbook) -> str:
    """The tutorial's ``<docker.domain.com>:5000/hello-world`` (with the image's tag, if any)."""
    return f"{rb.p.registry}/{rb.p.verify_image.split('/')[-1]}"


def repo_and_tag(rb: Runbook) -> tuple[str, str]:
    """``hello-world``, ``latest``: the pushed image's repository in the registry, and tag."""
    repo, _, tag = rb.p.verify_image.split("/")[-1].partition(":")
    return repo, tag or "latest"


def _with_login(rb: Runbook, *argv: str) -> str:
    user, password = first_user(rb)
    return rb.host.sh(
        _WITH_LOGIN,
        user,
        rb.p.registry,
        *argv,
        stdin=password,
        display=f"docker login {rb.p.registry} (as {user}) && {' '.join(argv)}",
    ).stdout


def _skipped(rb: Runbook, name: str) -> StepResult | None:
    """The round trip is skipped when the registry already holds the image (see above)."""
    if rb.p.verify_push == "auto" and rb.cache.get("in registry"):
        return StepResult(name, "skipped", "already verified: the image is in the registry")
    return None


@step("Already in the registry", check_only=True)
def in_registry(rb: Runbook) -> StepResult:
    """Does the registry hold the image already (it was pushed and pulled before)?"""
    p, (repo, tag) = rb.p, repo_and_tag(rb)
    answer = probe.https_get(
        rb.host,
        p.registry_port,
        p.registry_host,
        ca_pem(rb),
        f"/v2/{repo}/tags/list",
        auth=first_user(rb),
    )
    tags = (answer.json() or {}).get("tags") or [] if answer.status == 200 else []
    rb.cache["in registry"] = tag in tags
    if not rb.cache["in registry"]:
        return StepResult(
            "Already in the registry",
            "ok",
            f"{repo}:{tag} is not in the registry yet: push and pull it",
        )
    how = (
        "skip the round trip"
        if p.verify_push == "auto"
        else "verify_push: always, so push and pull it again"
    )
    return StepResult(
        "Already in the registry",
        "ok",
        f"{repo}:{tag} is in the registry, pushed and pulled before: {how}",
    )


@step("Run the image", check_only=True)
def run_image(rb: Runbook) -> StepResult:
    """``docker run --rm`` of ``verify_image``; pulls it when missing."""
    if skip := _skipped(rb, "Run the image"):
        return skip
    image = rb.p.verify_image
    return StepResult(
        "Run the image", "ok", f"docker run --rm {image}: {docker_run(rb.host, image)}"
    )


@step("Tag", check_only=True)
def tag(rb: Runbook) -> StepResult:
    if skip := _skipped(rb, "Tag"):
        return skip
    rb.host.run(["docker", "tag", rb.p.verify_image, pushed_name(rb)])
    return StepResult("Tag", "ok", f"{rb.p.verify_image} tagged as {pushed_name(rb)}")


@step("Log in", check_only=True)
def login(rb: Runbook) -> StepResult:
    if skip := _skipped(rb, "Log in"):
        return skip
    _with_login(rb, "true")
    user = first_user(rb)[0]
    return StepResult("Log in", "ok", f"docker login {rb.p.registry} as {user}: Login Succeeded")


@step("Push", check_only=True)
def push(rb: Runbook) -> StepResult:
    if skip := _skipped(rb, "Push"):
        return skip
    out = _with_login(rb, "docker", "push", pushed_name(rb))
    digest = next((w for w in out.split() if w.startswith("sha256:")), "")
    return StepResult("Push", "ok", f"pushed {pushed_name(rb)} {digest}".strip())


@step("Remove the local images", check_only=True)
def remove_local(rb: Runbook) -> StepResult:
    """Remove both tags, after the containers that still use them (the tutorial's hint)."""
    if skip := _skipped(rb, "Remove the local images"):
        return skip
    names = [rb.p.verify_image, pushed_name(rb)]
    script = r"""
for image in "$@"; do
  # Only stopped containers: a running one may be a service built on the same image.
  ids=$(docker ps -aq --filter "ancestor=$image" --filter status=exited --filter status=created)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
done
docker image rm "$@" >/dev/null
"""
    rb.host.sh(
        script, *names, display=f"docker rm (containers of) and docker image rm {' '.join(names)}"
    )
    return StepResult("Remove the local images", "ok", f"removed {' and '.join(names)}")


@step("Pull", check_only=True)
def pull(rb: Runbook) -> StepResult:
    """Pull from the registry, then tag back the original name, so the host ends as it began."""
    if skip := _skipped(rb, "Pull"):
        return skip
    out = _with_login(rb, "docker", "pull", pushed_name(rb))
    rb.host.run(["docker", "tag", pushed_name(rb), rb.p.verify_image])
    digest = next((w.removeprefix("Digest:") for w in out.split() if w.startswith("sha256:")), "")
    return StepResult("Pull", "ok", f"pulled {pushed_name(rb)} {digest}".strip())


@step("Run the pulled image", check_only=True)
def run_pulled(rb: Runbook) -> StepResult:
    if skip := _skipped(rb, "Run the pulled image"):
        return skip
    image = pushed_name(rb)
    return StepResult(
        "Run the pulled image", "ok", f"docker run --rm {image}: {docker_run(rb.host, image)}"
    )


@step("Catalog", check_only=True)
def catalog(rb: Runbook) -> StepResult:
    p = rb.p
    answer = probe.https_get(
        rb.host, p.registry_port, p.registry_host, ca_pem(rb), "/v2/_catalog", auth=first_user(rb)
    )
    repos = (answer.json() or {}).get("repositories", []) if answer.status == 200 else []
    wanted = repo_and_tag(rb)[0]
    if wanted not in repos:
        raise RunbookError(
            f"/v2/_catalog answered {answer.status} and does not list {wanted}: {repos}"
        )
    return StepResult("Catalog", "ok", f"the registry holds {', '.join(repos)}")
