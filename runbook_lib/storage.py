"""The registry's storage, day 2 (notebook 14): what it holds, deleting tags, and garbage
collection done safely.

The registry never frees space by itself. Deleting a tag through its API (which needs
``REGISTRY_STORAGE_DELETE_ENABLED``, ``registry_storage_delete: true``) removes the
manifest; the layers stay on disk until ``registry garbage-collect`` runs. The registry's
documentation (distribution, ``docs/garbage-collection.md``) warns that a push during a
collection may lose the pushed layers, and recommends read-only mode while it runs. So:

1. plan with ``registry garbage-collect --dry-run`` in the running container: nothing
   eligible means nothing to do (``ok``);
2. otherwise the service gets ``REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled":true}``
   (``docker service update``), and the collection runs once its task answers;
3. whatever happens, it is made writable again (``--env-rm``), with the spec it had (the
   stack file's; checked after, see :func:`same_spec`); the restarted registry also forgets what it cached about the
   deleted blobs.

The setting is not in the stack file and does not change the stack digest label, so
:func:`runbook_lib.registry.deployed` looks for it: a service left read-only (the
connection lost in the middle) is deployed again by notebook 07 or this notebook.

Deleting by digest deletes every tag of the repository that points at that manifest
(distribution 2.8, ``registry/handlers/manifests.go``, ``DeleteManifest`` untags each tag
``Lookup`` finds): a tag whose manifest another tag shares is refused unless both are
listed.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import probe, progress
from .certs import ca_pem
from .context import Runbook
from .errors import ParameterError, RunbookError, WaitTimeout
from .params import EXAMPLES, split_tag
from .registry import MAINTENANCE_ENV, first_user, update_state
from .steps import Call, Found, Outcome, Plan, Skip, step

# Every kind of manifest a registry may hold, so HEAD answers with the digest the tag
# really points at (a registry converts or refuses what the client does not accept).
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DEFAULT_CONFIG = "/etc/docker/registry/config.yml"
READ_ONLY_VALUE = '{"enabled":true}'
UNTAGGED_ISSUE = "distribution#3178"

Content = dict[str, dict[str, str]]  # repository -> tag -> manifest digest


# -- pure: parsing and planning -----------------------------------------------------------


@dataclass(frozen=True)
class GcPlan:
    """What ``registry garbage-collect`` said: blobs in use, blobs and manifests eligible
    for deletion, and (3.x) repositories' layer links to a deleted blob."""

    marked: int
    blobs: int
    manifests: int
    layer_links: int = 0
    digests: tuple[str, ...] = ()

    @property
    def eligible(self) -> bool:
        return bool(self.blobs or self.manifests or self.layer_links)


_GC_SUMMARY = re.compile(
    r"^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion$", re.M
)


def parse_gc(output: str) -> GcPlan:
    """Read ``registry garbage-collect``'s output (distribution's
    ``registry/storage/garbagecollect.go``: ``emit(...)`` lines)."""
    m = _GC_SUMMARY.search(output)
    if not m:
        raise RunbookError(
            "registry garbage-collect did not print its summary ('N blobs marked, ...'): "
            + (output.strip().splitlines() or ["no output"])[-1][:200]
        )
    digests = tuple(re.findall(r"^blob eligible for deletion: (\S+)$", output, re.M))
    links = len(re.findall(r"^\S+: layer link eligible for deletion: ", output, re.M))
    return GcPlan(int(m[1]), int(m[2]), int(m[3]), links, digests)


def registry_major(version: str) -> int | None:
    """The major version in ``registry --version``'s answer, e.g. ``registry
    github.com/docker/distribution 2.8.2+ds1`` or ``... v3.0.0``: 2, 3 (None if unseen)."""
    m = re.search(r"\s[vV]?(\d+)\.\d+", version)
    return int(m[1]) if m else None


def untagged_refusal(major: int | None, version: str) -> str | None:
    """Why ``storage_gc_delete_untagged`` is refused on this registry, or None."""
    if major is not None and major >= 3:
        return None
    found = version.strip() or "an unknown version"
    return (
        f"the registry is {found}: registry 2.x's garbage-collect --delete-untagged also "
        "deletes the per-architecture manifests of multi-arch images (their index names "
        f"them by digest, never by tag), which breaks every pull of them ({UNTAGGED_ISSUE}, "
        "fixed in 3.0). Leave it false, or run registry 3 (registry_image)"
    )


@dataclass
class Deletions:
    """What deleting ``storage_delete_tags`` means for the registry's content."""

    delete: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (repo, digest) -> tags
    gone: list[str] = field(default_factory=list)  # listed, not in the registry (any more)
    refused: list[str] = field(default_factory=list)  # why a tag cannot be deleted alone


def plan_deletions(wanted: list[str], content: Content) -> Deletions:
    """Which manifests to delete (each once, with its tags) for the ``REPOSITORY:TAG``
    entries in ``wanted``; the tags already gone; and the refusals: a manifest that other
    tags, not listed, point at too (deleting it by digest would delete them as well)."""
    out = Deletions()
    listed = {split_tag(w) for w in wanted}
    for item in wanted:
        repo, tag = split_tag(item) or ("", "")
        digest = content.get(repo, {}).get(tag)
        if digest is None:
            out.gone.append(item)
            continue
        sharing = sorted(t for t, d in content[repo].items() if d == digest)
        others = [t for t in sharing if (repo, t) not in listed]
        if others:
            out.refused.append(
                f"{item} points at {digest}, as {', '.join(f'{repo}:{t}' for t in others)} "
                "does: the registry deletes a manifest by digest, with every tag pointing at "
                "it. List those tags too, or retag them first"
            )
            continue
        out.delete.setdefault((repo, digest), sharing)
    return out


def table(content: Content) -> dict[str, str]:
    """One line per repository: its tags with the first 12 hex digits of their digest."""
    return {
        repo: ", ".join(f"{t} ({d.removeprefix('sha256:')[:12]})" for t, d in sorted(tags.items()))
        or "(no tags)"
        for repo, tags in sorted(content.items())
    }


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


# -- the registry's API, with the first user's credentials, over TLS verified against ca.crt


def api(rb: Runbook, path: str, method: str = "GET", **kwargs: Any) -> probe.Answer:
    p = rb.p
    return probe.https_get(
        rb.host,
        p.registry_port,
        p.registry_host,
        ca_pem(rb),
        path,
        auth=first_user(rb),
        method=method,
        timeout=30,
        **kwargs,
    )


def _ok(answer: probe.Answer, what: str) -> Any:
    if answer.status != 200:
        raise RunbookError(
            f"{what}: the registry answered {answer.status} "
            f"{answer.body[:200].decode('utf-8', 'replace').strip()}"
        )
    return answer.json() or {}


def repositories(rb: Runbook) -> list[str]:
    """Every repository, following the catalog's pages (its ``Link`` header)."""
    repos: list[str] = []
    path = "/v2/_catalog?n=100"
    while path:
        answer = api(rb, path)
        repos += _ok(answer, "/v2/_catalog").get("repositories") or []
        link = answer.headers.get("link", "")
        path = link[link.find("<") + 1 : link.find(">")] if link.startswith("<") else ""
    return repos


def tags(rb: Runbook, repo: str) -> list[str]:
    answer = api(rb, f"/v2/{repo}/tags/list")
    if answer.status == 404:  # a repository whose tags were all deleted
        return []
    return sorted(_ok(answer, f"/v2/{repo}/tags/list").get("tags") or [])


def manifest_digest(rb: Runbook, repo: str, reference: str) -> str | None:
    """The digest a tag (or digest) resolves to, or None when the registry has none."""
    answer = api(rb, f"/v2/{repo}/manifests/{reference}", "HEAD", headers={"Accept": ACCEPT})
    if answer.status == 404:
        return None
    if answer.status != 200 or "docker-content-digest" not in answer.headers:
        raise RunbookError(f"HEAD /v2/{repo}/manifests/{reference}: {answer.status}")
    return answer.headers["docker-content-digest"]


def content(rb: Runbook, refresh: bool = False) -> Content:
    """Repository -> tag -> digest, read once per notebook (and again after a change)."""
    if refresh or "registry content" not in rb.cache:
        found: Content = {}
        with progress.activity("reading the registry's tags", unit="repositories") as act:
            for repo in repositories(rb):
                found[repo] = {}
                for tag in tags(rb, repo):
                    digest = manifest_digest(rb, repo, tag)
                    if digest:
                        found[repo][tag] = digest
                act.update(n=1)
        rb.cache["registry content"] = found
    return rb.cache["registry content"]


# -- the running registry: its container, version, volume ---------------------------------


def container(rb: Runbook) -> str:
    """The registry's running container on the host (the registry is pinned there)."""
    out = rb.host.run(
        [
            *("docker", "ps", "-q", "--filter", "status=running", "--filter"),
            f"label=com.docker.swarm.service.name={rb.names.registry_service}",
        ]
    ).stdout.split()
    if not out:
        raise RunbookError(
            f"no running container of {rb.names.registry_service} on {rb.host.name}: run "
            "notebook 07 first (or wait until its task runs)"
        )
    return out[0]


def version(rb: Runbook) -> str:
    """``registry --version`` of the running registry."""
    if "registry version" not in rb.cache:
        out = rb.host.run(["docker", "exec", container(rb), "registry", "--version"]).stdout
        rb.cache["registry version"] = out.strip()
    return rb.cache["registry version"]


def config_file(rb: Runbook, name: str) -> str:
    """The configuration the container was started with (its command's ``.yml``)."""
    out = rb.host.run(["docker", "inspect", "--format", "{{json .Config.Cmd}}", name]).stdout
    cmd = json.loads(out or "null") or []
    return next((a for a in reversed(cmd) if a.endswith((".yml", ".yaml"))), DEFAULT_CONFIG)


def volume_path(rb: Runbook) -> str:
    """Where the registry's volume lives on the host (a ``local`` volume)."""
    name = rb.names.registry_volume
    r = rb.host.run(
        ["docker", "volume", "inspect", "--format", "{{.Driver}} {{.Mountpoint}}", name],
        check=False,
    )
    driver, _, path = r.stdout.strip().partition(" ")
    if not r.ok or driver != "local" or not path.startswith("/"):
        raise RunbookError(
            f"the registry's volume {name} is not a local volume on {rb.host.name} "
            f"({(r.stdout or r.stderr).strip()[:200]}): run notebook 07 first"
        )
    return path


_USAGE = r"""
du -sb "$1" | cut -f1
find "$1/docker/registry/v2/blobs" -type f -name data 2>/dev/null | wc -l
"""


def usage(rb: Runbook) -> tuple[int, int]:
    """Bytes in the registry's volume, and how many blobs it holds."""
    path = volume_path(rb)
    out = rb.host.sh(_USAGE, path, display=f"du -sb {path}; count its blobs").stdout.split()
    return int(out[0]), int(out[1])


def gc(rb: Runbook, *, dry_run: bool) -> tuple[GcPlan, str]:
    """Run ``registry garbage-collect`` in the running container; its plan and output."""
    name = container(rb)
    argv = ["docker", "exec", name, "registry", "garbage-collect"]
    if dry_run:
        argv.append("--dry-run")
    if rb.p.storage_gc_delete_untagged:
        argv.append("--delete-untagged")
    argv.append(config_file(rb, name))
    out = rb.host.run(argv, timeout=3600).stdout
    return parse_gc(out), shlex.join(argv)


# -- read-only while the storage is worked on ---------------------------------------------

_TASK_ENV = r"""
docker service ps -q --filter desired-state=running "$1" | xargs -r docker inspect \
  --format '{{.Status.State}} {{json .Spec.ContainerSpec.Env}}'
"""


def _spec(rb: Runbook) -> dict:
    name = rb.names.registry_service
    argv = ["docker", "service", "inspect", "--format", "{{json .Spec}}", name]
    return json.loads(rb.host.run(argv).stdout)


def env_of(spec: dict | None) -> list[str]:
    return ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Env") or []


def same_spec(a: dict, b: dict) -> bool:
    """Whether two service specs are the same, their variables perhaps in another order:
    ``docker service update --env-add`` rebuilds the list from a map (docker/cli,
    ``cli/command/service/update.go``, ``updateEnvironment``), so the order after
    ``--env-add`` and ``--env-rm`` is Docker's to choose; the container sees the same."""

    def sorted_env(spec: dict) -> dict:
        spec = json.loads(json.dumps(spec))
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        if "Env" in container:
            container["Env"] = sorted(container["Env"] or [])
        return spec

    return sorted_env(a) == sorted_env(b)


def is_read_only(env: list[str]) -> bool:
    return any(e.partition("=")[0] == MAINTENANCE_ENV for e in env)


def tasks_settled(lines: str, read_only: bool) -> bool:
    """Whether every task Docker wants running runs, with (or without) the read-only
    setting; ``lines`` are ``STATE ENV-JSON``, one task a line."""
    rows = [line.split(" ", 1) for line in lines.splitlines() if line.strip()]
    return bool(rows) and all(
        len(r) == 2 and r[0] == "running" and is_read_only(json.loads(r[1])) == read_only
        for r in rows
    )


def wait_mode(rb: Runbook, read_only: bool, timeout: float = 180.0) -> float:
    """Wait until the registry's task runs read-only (or writable), its update is over, and
    it answers 401 without and 200 with credentials; the seconds it took."""
    name, start = rb.names.registry_service, time.monotonic()
    mode = "read-only" if read_only else "writable"
    last = "nothing yet"
    with progress.activity(f"waiting for the registry, {mode}", total=timeout, unit="s") as act:
        while True:
            waited = time.monotonic() - start
            state = update_state(rb)
            if state == "paused" or (read_only and state.startswith("rollback")):
                raise RunbookError(
                    f"Docker stopped the registry's update to {mode} ({state}): see "
                    f"`docker service ps --no-trunc {name}` on the host"
                )
            tasks = rb.host.sh(_TASK_ENV, name, display=f"docker service ps {name}").stdout
            if state not in ("", "completed", "rollback_completed"):
                last = f"update {state}"
            elif not tasks_settled(tasks, read_only):
                last = f"its task is not running {mode} yet"
            else:
                try:
                    anon = probe.https_get(
                        rb.host, rb.p.registry_port, rb.p.registry_host, ca_pem(rb)
                    )
                    auth = api(rb, "/v2/")
                    if (anon.status, auth.status) == (401, 200):
                        return waited
                    last = f"/v2/ answers {anon.status} and {auth.status}"
                except OSError as exc:
                    last = str(exc)
            if waited > timeout:
                raise WaitTimeout(
                    f"the registry was not {mode} and answering after {waited:.0f} s; "
                    f"last seen: {last}"
                )
            act.update(n=max(0.0, min(waited, timeout) - act.count))
            time.sleep(0.5)


@contextmanager
def read_only(rb: Runbook, done: list[str]) -> Iterator[None]:
    """The registry read-only for the block, writable again after it, whatever happens.
    The commands run are appended to ``done``; a spec that did not come back exactly is
    an error after the block (the block's own error first)."""
    name = rb.names.registry_service
    before = _spec(rb)  # compared with the spec afterwards
    if is_read_only(env_of(before)):
        raise RunbookError(
            f"{name} is read-only already (another collection or backup, or one that was "
            "interrupted): run notebook 07, which makes it writable again"
        )
    add = [
        *("docker", "service", "update", "--detach", "--quiet"),
        *("--env-add", f"{MAINTENANCE_ENV}={READ_ONLY_VALUE}", name),
    ]
    try:
        rb.host.run(add, timeout=120)
        done.append(shlex.join(add))
        waited = wait_mode(rb, read_only=True)
        done.append(f"registry read-only and answering (after {waited:.0f} s)")
        yield
    finally:
        back = writable_again(rb, before)
        if back:
            done.append(back)
    after = _spec(rb)
    if not same_spec(after, before):
        raise RunbookError(
            f"{name} is writable again, but its spec is not the one it had: run notebook 07"
        )


def writable_again(rb: Runbook, before: dict) -> str:
    """Undo the read-only setting with ``docker service update --env-rm``, which gives back
    the spec the service had (see :func:`same_spec`; ``docker service rollback`` would not
    do: Docker 20.10's daemon filled in its defaults, StopGracePeriod and more, in the
    lab). What was run ("" when the service was not read-only: an update Docker rolled
    back itself)."""
    name = rb.names.registry_service
    spec = _spec(rb)
    if not is_read_only(env_of(spec)):
        wait_mode(rb, read_only=False)
        return ""
    argv = ["docker", "service", "update", "--detach", "--quiet"]
    argv += ["--env-rm", MAINTENANCE_ENV, name]
    rb.host.run(argv, timeout=120)
    waited = wait_mode(rb, read_only=False)
    return f"{shlex.join(argv)}: writable and answering (after {waited:.0f} s)"


# -- the steps ------------------------------------------------------------------------------


def _untagged_check(rb: Runbook) -> None:
    if rb.p.storage_gc and rb.p.storage_gc_delete_untagged:
        why = untagged_refusal(registry_major(version(rb)), version(rb))
        if why:
            raise ParameterError(
                "storage_gc_delete_untagged", True, why, EXAMPLES["storage_gc_delete_untagged"]
            )


@step("Storage parameters")
def check(rb: Runbook) -> Outcome:
    """Refuse, before anything changes, what this notebook would not do."""
    p = rb.p
    if p.storage_delete_tags and not p.registry_storage_delete:
        raise ParameterError(
            "registry_storage_delete",
            False,
            f"must be true to delete storage_delete_tags ({', '.join(p.storage_delete_tags)}): "
            "the registry refuses deletes without it (REGISTRY_STORAGE_DELETE_ENABLED, "
            "which this notebook then deploys)",
            "true",
        )
    gc = "off"
    if p.storage_gc:
        gc = "on, with --delete-untagged" if p.storage_gc_delete_untagged else "on"
    shown = (
        f"tags to delete: {', '.join(p.storage_delete_tags) or 'none'}; garbage collection: {gc}"
    )
    try:
        _untagged_check(rb)
    except RunbookError as exc:
        if isinstance(exc, ParameterError) or not rb.dry_run:
            raise
        return Found(f"{shown} (the registry's version is not known yet: {exc})")
    return Found(shown)


@step("Repositories and tags")
def listing(rb: Runbook) -> Outcome:
    """The registry's repositories, their tags and the manifest each points at."""
    found = content(rb)
    count = sum(len(t) for t in found.values())
    return Found(f"{len(found)} repositories, {count} tags", details=table(found))


def _delete(rb: Runbook, repo: str, digest: str) -> None:
    answer = api(rb, f"/v2/{repo}/manifests/{digest}", "DELETE")
    if answer.status == 405:
        raise RunbookError(
            f"the registry refuses to delete {repo}@{digest} (405): it runs without "
            "REGISTRY_STORAGE_DELETE_ENABLED; set registry_storage_delete: true and run this "
            "notebook (or 07) again"
        )
    if answer.status not in (202, 404):  # 404: deleted meanwhile
        raise RunbookError(f"DELETE {repo}@{digest}: the registry answered {answer.status}")


@step("Delete tags")
def delete_tags(rb: Runbook) -> Outcome:
    wanted = rb.p.storage_delete_tags
    if not wanted:
        return Skip("storage_delete_tags is empty")
    plan = plan_deletions(wanted, content(rb))
    if plan.refused:
        raise RunbookError("refused, nothing deleted: " + "; ".join(plan.refused))
    gone = f"already gone: {', '.join(plan.gone)}" if plan.gone else ""
    actions = [
        Call(
            f"DELETE /v2/{repo}/manifests/{digest} ({', '.join(f'{repo}:{t}' for t in tags)})",
            lambda _h, repo=repo, digest=digest: _delete(rb, repo, digest),
        )
        for (repo, digest), tags in plan.delete.items()
    ]
    deleted = [f"{repo}:{t}" for (repo, _), tags in plan.delete.items() for t in tags]

    def after(result) -> None:  # noqa: ANN001 (a StepResult)
        left = content(rb, refresh=True)
        still = [t for t in deleted if split_tag(t)[1] in left.get(split_tag(t)[0], {})]
        if still:
            raise RunbookError(f"deleted, yet the registry still lists {', '.join(still)}")

    return Plan(
        actions,
        changed=f"deleted {', '.join(deleted)}" + (f"; {gone}" if gone else ""),
        unchanged=gone,
        after=after,
    )


@step("Garbage collection")
def collect(rb: Runbook) -> Outcome:
    """Plan with --dry-run; collect, read-only, only when something is eligible."""
    if not rb.p.storage_gc:
        return Skip("storage_gc is false")
    _untagged_check(rb)
    plan, dry = gc(rb, dry_run=True)
    if not plan.eligible:
        return Found(f"nothing to collect: {plan.marked} blobs in use, none eligible")
    what = f"{plan.blobs} blobs and {plan.manifests} manifests eligible"
    if plan.layer_links:
        what += f", {plan.layer_links} layer links"
    record: dict[str, Any] = {}

    def run(_host) -> None:  # noqa: ANN001
        done: list[str] = []
        record["done"] = done
        record["before"] = usage(rb)
        with read_only(rb, done):
            collected, argv = gc(rb, dry_run=False)
            done.append(argv)
            record["collected"] = collected
        record["after"] = usage(rb)
        rb.cache.pop("registry content", None)

    def after(result) -> None:  # noqa: ANN001 (a StepResult)
        (size0, blobs0), (size1, blobs1) = record["before"], record["after"]
        result.actions = record["done"]
        result.reason = (
            f"collected: {blobs0 - blobs1} blobs deleted, {human(size0 - size1)} freed "
            f"({human(size0)} -> {human(size1)})"
        )
        result.details.update(
            {
                "volume": f"{human(size0)} -> {human(size1)}",
                "blobs": f"{blobs0} -> {blobs1}",
                "reclaimed": human(size0 - size1),
            }
        )

    return Plan(
        [
            Call(
                f"{MAINTENANCE_ENV} on {rb.names.registry_service} (read-only), "
                f"{dry.replace(' --dry-run', '')}, then writable again (--env-rm)",
                run,
            )
        ],
        changed=f"to collect: {what} ({plan.marked} in use)",
        details={"plan": f"{what}; {plan.marked} blobs in use"},
        after=after,
    )
