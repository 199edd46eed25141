"""Verification (tutorial: 验证): run, tag, log in, push, remove, pull, as the tutorial did.

A check that passes is ``verified``; the steps of the round trip that change something
(a tag, the push that adds the image to the registry, the removal and the pull on the host)
are ``changed``, although the host ends as it began. The push and pull round trip proves the
registry's storage; once the image is
in the registry, later runs (``verify_push: auto``) check the login and the registry's
content over TLS and skip the round trip, which the certificate and users, the parts that
change, do not need: notebook 07 has already checked them with every change. Logging in uses a throw-away Docker client configuration that is removed in
the same command, so the registry password is never stored on the host (``docker login``
would otherwise keep it, base64-encoded, in ``~/.docker/config.json``).
"""

from __future__ import annotations

import shlex

from . import probe, progress, seed
from .certs import ca_pem
from .context import Runbook
from .engine import docker_run
from .errors import RunbookError
from .registry import first_user
from .steps import Done, Note, Outcome, Plan, Skip, Verified, step

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
    with progress.activity(" ".join(argv), unit="lines", quiet=1) as p:  # a push, a pull
        return rb.host.sh(
            _WITH_LOGIN,
            user,
            rb.p.registry,
            *argv,
            stdin=password,
            display=f"docker login {rb.p.registry} (as {user}) && {' '.join(argv)}",
            on_line=p.line,
        ).stdout


def held(rb: Runbook) -> bool:
    """Whether the registry holds the image's tag already (read once per notebook, over
    TLS, with the registry's credentials)."""
    if "in registry" not in rb.cache:
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
    return rb.cache["in registry"]


def round_trip_done(rb: Runbook) -> str | None:
    """Why the round trip is skipped: the registry already holds the image (see above)."""
    if rb.p.verify_push == "auto" and not rb.dry_run and held(rb):
        return "already verified: the registry holds the image (the catalog below logs in)"
    return None


def in_registry(rb: Runbook) -> Note:
    """Does the registry hold the image already (it was pushed and pulled before)? A fact,
    not a step: it decides whether the round trip below runs."""
    repo, tag = repo_and_tag(rb)
    if rb.dry_run:
        return Note("check mode: the registry is not asked; the round trip is not run")
    if not held(rb):
        return Note(f"{repo}:{tag} is not in the registry yet: it is pushed and pulled below")
    how = (
        "the round trip is skipped"
        if rb.p.verify_push == "auto"
        else "verify_push: always, so it is pushed and pulled again"
    )
    return Note(f"{repo}:{tag} is in the registry, pushed and pulled before: {how}")


def from_hub_done(rb: Runbook) -> str | None:
    """Why the steps that need Docker Hub's image are skipped: it comes from
    ``verify_archive`` instead, or the round trip is done (see above)."""
    if rb.p.verify_archive:
        return "verify_archive: the image is seeded from the archive, not pulled from Docker Hub"
    return round_trip_done(rb)


def _no_archive(rb: Runbook) -> str | None:
    return None if rb.p.verify_archive else "verify_archive is not set: run, tag and push below"


@step("Seed from the archive", skip=_no_archive)
def seed_archive(rb: Runbook) -> Outcome:
    """Put ``verify_image`` into the registry from ``verify_archive`` (a file on the runner)
    with notebook 18's library, instead of pulling it from Docker Hub and pushing it:
    ``ok`` when the registry holds that very manifest under the name already."""
    if rb.dry_run and not ca_pem(rb):
        return Skip("check mode: no CA yet (notebook 05 has not run): the registry is not asked")
    repo, tag = repo_and_tag(rb)
    outcome = seed.seed_one(rb, rb.p.verify_archive, f"{repo}:{tag}")
    if isinstance(outcome, Plan):
        rb.cache["in registry"] = False  # a new image under the name: pull and run it below
    return outcome


@step("Run the image", check_only=True, skip=from_hub_done)
def run_image(rb: Runbook) -> Verified:
    """``docker run --rm`` of ``verify_image``; pulls it when missing."""
    image = rb.p.verify_image
    return Verified(f"docker run --rm {image}: {docker_run(rb.host, image)}")


@step("Tag", check_only=True, skip=from_hub_done)
def tag(rb: Runbook) -> Done:
    argv = ["docker", "tag", rb.p.verify_image, pushed_name(rb)]
    rb.host.run(argv)
    return Done(f"{rb.p.verify_image} tagged as {pushed_name(rb)}", [shlex.join(argv)])


@step("Log in", check_only=True, skip=round_trip_done)
def login(rb: Runbook) -> Verified:
    _with_login(rb, "true")
    user = first_user(rb)[0]
    return Verified(f"docker login {rb.p.registry} as {user}: Login Succeeded")


@step("Push", check_only=True, skip=from_hub_done)
def push(rb: Runbook) -> Outcome:
    before = held(rb)
    out = _with_login(rb, "docker", "push", pushed_name(rb))
    digest = next((w for w in out.split() if w.startswith("sha256:")), "")
    if before:
        return Verified(f"pushed {pushed_name(rb)} {digest} again: the registry held it".strip())
    return Done(
        f"pushed {pushed_name(rb)} {digest}: new in the registry",
        [f"docker push {pushed_name(rb)}"],
    )


@step("Remove the local images", check_only=True, skip=from_hub_done)
def remove_local(rb: Runbook) -> Done:
    """Remove both tags, after the containers that still use them (the tutorial's hint)."""
    names = [rb.p.verify_image, pushed_name(rb)]
    script = r"""
for image in "$@"; do
  # Only stopped containers: a running one may be a service built on the same image.
  ids=$(docker ps -aq --filter "ancestor=$image" --filter status=exited --filter status=created)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
done
docker image rm "$@" >/dev/null
"""
    shown = f"docker rm (stopped containers of) and docker image rm {' '.join(names)}"
    rb.host.sh(script, *names, display=shown)
    return Done(f"removed {' and '.join(names)}", [shown])


@step("Pull", check_only=True, skip=round_trip_done)
def pull(rb: Runbook) -> Done:
    """Pull from the registry, then tag back the original name, so the host ends as it began
    (with ``verify_archive`` the host never had it: nothing to tag back)."""
    out = _with_login(rb, "docker", "pull", pushed_name(rb))
    digest = next((w.removeprefix("Digest:") for w in out.split() if w.startswith("sha256:")), "")
    if rb.p.verify_archive:
        return Done(
            f"pulled {pushed_name(rb)} {digest}".strip(), [f"docker pull {pushed_name(rb)}"]
        )
    rb.host.run(["docker", "tag", pushed_name(rb), rb.p.verify_image])
    return Done(
        f"pulled {pushed_name(rb)} {digest}".strip(),
        [f"docker pull {pushed_name(rb)}", f"docker tag {pushed_name(rb)} {rb.p.verify_image}"],
    )


@step("Run the pulled image", check_only=True, skip=round_trip_done)
def run_pulled(rb: Runbook) -> Verified:
    image = pushed_name(rb)
    return Verified(f"docker run --rm {image}: {docker_run(rb.host, image)}")


@step("Catalog", check_only=True)
def catalog(rb: Runbook) -> Verified:
    p = rb.p
    user = first_user(rb)
    answer = probe.https_get(
        rb.host, p.registry_port, p.registry_host, ca_pem(rb), "/v2/_catalog", auth=user
    )
    repos = (answer.json() or {}).get("repositories", []) if answer.status == 200 else []
    wanted = repo_and_tag(rb)[0]
    if wanted not in repos:
        raise RunbookError(
            f"/v2/_catalog answered {answer.status} and does not list {wanted}: {repos}"
        )
    return Verified(
        f"logged in as {user[0]} over TLS (ca.crt verified): the registry holds {', '.join(repos)}"
    )
