"""Seeding the registry from image archives on the runner (notebook 18), without Docker.

The runbook speaks the registry's HTTP API itself (distribution's ``docs/spec/api.md``,
release/2.8): for each image, ``HEAD`` of the tag's manifest first (the same digest is
``ok``, without reading a byte of the archive); then each blob the repository lacks is
mounted from another repository of this run that holds it (``POST
/blobs/uploads/?mount=&from=``, answered 201) or uploaded in chunks (``POST``, ``PATCH``
each chunk, ``PUT ?digest=``), its sha256 checked as it streams out of the archive; then
an index's platform manifests by digest, and last the manifest under its tag. A blob whose
content is not its digest stops the image before any manifest is sent: blobs may stay in
the registry, untagged, but no tag ever points at a partial image.

Two ways to the registry, both TLS verified against the registry's CA and name, with the
first user's credentials: straight from the runner to ``registry_host:registry_port``
when that answers, otherwise through the SSH connection to the host's own
``127.0.0.1:registry_port`` (:meth:`runbook_lib.hosts.SSHHost.tunnel`).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import archive as arc
from . import progress
from .certs import ca_pem
from .context import Runbook
from .errors import RunbookError
from .registry import first_user
from .steps import Call, Found, Outcome, Plan, Skip, StepResult, Verified, step

#: Bytes per PATCH request of a chunked upload.
UPLOAD_CHUNK = 64 << 20
#: Requests and uploads at once (each on its own connection).
PARALLEL = 4
T = TypeVar("T")
R = TypeVar("R")
ACCEPT = ", ".join((*arc.INDEXES, *arc.MANIFESTS))
MB = 1e6


class RegistryError(RunbookError):
    """The registry refused a request: the method, the path, its status and its reason."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> str:
        try:
            errors = json.loads(self.body).get("errors") or []
            return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            return self.body[:200].decode("utf-8", "replace")


class _Connection(http.client.HTTPSConnection):
    """HTTPS over a socket that ``opener`` makes (a TCP connection, or an SSH tunnel)."""

    def __init__(self, opener: Callable[[], socket.socket], server_name: str, port: int, ctx):
        super().__init__(server_name, port, context=ctx, timeout=60)
        self._opener = opener

    def connect(self) -> None:
        sock = self._opener()
        sock.settimeout(self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Registry:
    """The registry's API v2 over kept-alive HTTPS connections, one per thread that asks:
    with the registry's password file, each request costs the registry a bcrypt check,
    so requests run side by side (:data:`PARALLEL`)."""

    def __init__(
        self,
        opener: Callable[[], socket.socket],
        server_name: str,
        port: int,
        ca: bytes,
        auth: tuple[str, str],
        how: str,
    ):
        self.ctx = ssl.create_default_context(cadata=ca.decode())
        self.server_name, self.port, self.how = server_name, port, how
        self._opener = opener
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        self._auth = f"Basic {token}"
        self._local = threading.local()

    @property
    def _conn(self) -> _Connection | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, conn: _Connection | None) -> None:
        self._local.conn = conn

    def close(self) -> None:
        """Close this thread's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def each(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """``fn`` on every item, :data:`PARALLEL` at a time, each thread with its own
        connection; the first error is raised once all are done."""
        if len(items) <= 1:
            return [fn(i) for i in items]

        def one(item: T) -> R:
            try:
                return fn(item)
            finally:
                self.close()

        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="seed") as pool:
            futures = [pool.submit(one, i) for i in items]
            wait(futures)
        return [f.result() for f in futures]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        all_headers = {"Authorization": self._auth, **(headers or {})}
        if body is None and method in ("POST", "PUT", "PATCH"):
            all_headers.setdefault("Content-Length", "0")
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = _Connection(self._opener, self.server_name, self.port, self.ctx)
            try:
                self._conn.request(method, path, body=body, headers=all_headers)
                r = self._conn.getresponse()
                data = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt or not (body is None or isinstance(body, bytes)):
                    raise
                continue  # a kept-alive connection the registry closed: once more
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            if r.getheader("Connection", "").lower() == "close":
                self.close()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        raise AssertionError("unreachable")

    def expect(self, answer: Answer, method: str, path: str, *ok: int) -> Answer:
        if answer.status not in ok:
            shown = path.split("?", 1)[0]
            raise RegistryError(
                f"{method} https://{self.server_name}:{self.port}{shown} answered "
                f"{answer.status}: {answer.error() or 'no reason given'}"
            )
        return answer

    # -- what the seeding asks ------------------------------------------------------------
    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """The digest the registry holds under ``repo:ref`` (a tag or a digest), or None."""
        path = f"/v2/{repo}/manifests/{ref}"
        a = self.expect(
            self.request("HEAD", path, headers={"Accept": ACCEPT}), "HEAD", path, 200, 404
        )
        return a.headers.get("docker-content-digest") if a.status == 200 else None

    def has_blob(self, repo: str, digest: str) -> bool:
        path = f"/v2/{repo}/blobs/{digest}"
        return self.expect(self.request("HEAD", path), "HEAD", path, 200, 404).status == 200

    def mount(self, repo: str, digest: str, source: str) -> str | None:
        """Mount a blob from another repository: None when it was mounted, else the upload
        location the registry opened instead (distribution answers 202 when it cannot)."""
        q = urllib.parse.urlencode({"mount": digest, "from": source})
        path = f"/v2/{repo}/blobs/uploads/?{q}"
        a = self.expect(self.request("POST", path), "POST", path, 201, 202)
        return None if a.status == 201 else _location(a)

    def start_upload(self, repo: str) -> str:
        path = f"/v2/{repo}/blobs/uploads/"
        return _location(self.expect(self.request("POST", path), "POST", path, 202))

    def send(
        self,
        where: str,
        blob: arc.Blob,
        chunks: Iterator[bytes],
        path: str,
        advance: Callable[[int], None],
    ) -> str:
        """Send a blob in chunks to the upload at ``where``, its digest checked on the way;
        return where to commit it. A blob that is not its digest cancels the upload and
        raises :class:`ArchiveError`."""
        hashed = arc.Hashed(blob, path)
        pieces = _Pieces(hashed.wrap(chunks))
        offset = 0
        try:
            while offset < blob.size:
                n = min(UPLOAD_CHUNK, blob.size - offset)
                body = pieces.take(n, advance)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(n),
                    "Content-Range": f"{offset}-{offset + n - 1}",
                }
                a = self.request("PATCH", where, body=body, headers=headers)
                where = _location(self.expect(a, "PATCH", where, 202))
                offset += n
            pieces.finish()
            hashed.check()
        except arc.ArchiveError:
            self.close()
            self.cancel(where)
            raise
        return where

    def cancel(self, where: str) -> None:
        """Drop an upload that was not committed (nothing of it stays in the registry); a
        failure to drop it is left to the registry, which purges old uploads itself."""
        try:
            self.request("DELETE", where)
        except (OSError, http.client.HTTPException):
            self.close()

    def commit(self, where: str, digest: str) -> None:
        """The blob uploaded at ``where`` becomes the repository's, under its digest."""
        sep = "&" if "?" in where else "?"
        done = f"{where}{sep}digest={urllib.parse.quote(digest)}"
        self.expect(self.request("PUT", done), "PUT", where.split("?")[0], 201)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        path = f"/v2/{repo}/manifests/{ref}"
        a = self.request("PUT", path, body=data, headers={"Content-Type": media_type})
        self.expect(a, "PUT", path, 201)
        return a.headers.get("docker-content-digest", arc.sha256(data))


def _location(a: Answer) -> str:
    loc = a.headers.get("location")
    if not loc:
        raise RegistryError(f"the registry answered {a.status} without a Location")
    u = urllib.parse.urlsplit(loc)
    return u.path + (f"?{u.query}" if u.query else "")


class _Pieces:
    """Takes exactly ``n`` bytes at a time from an iterator of chunks of any size."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.rest = b""

    def take(self, n: int, advance: Callable[[int], None]) -> Iterator[bytes]:
        while n:
            if not self.rest:
                self.rest = next(self.chunks, b"")
                if not self.rest:
                    return
            piece, self.rest = self.rest[:n], self.rest[n:]
            n -= len(piece)
            advance(len(piece))
            yield piece

    def finish(self) -> None:
        for _ in self.chunks:  # drains the hashing wrapper: it checks the end
            pass


# -- pushing one image --------------------------------------------------------------------


@dataclass
class Pushed:
    """What one image's seeding did: per blob, mounted, uploaded or already there."""

    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes: int = 0
    seconds: float = 0.0
    before: str | None = None

    def text(self, digest: str) -> str:
        parts = [f"{self.uploaded} blob(s) uploaded ({self.bytes / MB:.1f} MB)"]
        if self.mounted:
            parts.append(f"{self.mounted} mounted")
        if self.present:
            parts.append(f"{self.present} already there")
        was = f"; was {self.before}" if self.before else ""
        return f"{digest}{was}: {', '.join(parts)} in {self.seconds:.1f} s"


@dataclass
class Target:
    """An image of an archive and the name it gets in the registry."""

    archive: arc.Archive
    image: arc.Image
    repo: str
    tag: str

    @property
    def name(self) -> str:
        return f"{self.repo}:{self.tag}"


def push(reg: Registry, t: Target, holders: dict[str, str], before: str | None) -> Pushed:
    """Put one image into the registry: blobs it lacks, then the manifests, tag last.
    ``holders`` maps digests to a repository known to hold them (for mounts); it grows.

    Every blob to upload is sent and checked before any is committed, and mounts wait
    too: an archive with a damaged blob leaves no trace in the repository (uploads that
    are not committed are dropped), so the catalog does not change either."""
    began = time.monotonic()
    done = Pushed(before=before)
    missing: list[arc.Blob] = []
    mounts: list[arc.Blob] = []
    there = reg.each(lambda b: reg.has_blob(t.repo, b.digest), t.image.blobs)
    for b, present in zip(t.image.blobs, there, strict=True):
        if present:
            done.present += 1
            holders[b.digest] = t.repo
        elif holders.get(b.digest, t.repo) != t.repo:
            mounts.append(b)
        else:
            missing.append(b)
    total = sum(b.size for b in missing)
    sent: list[tuple[str, arc.Blob]] = []
    lock = threading.Lock()
    with progress.activity(
        f"{t.name}: {len(missing)} blob(s)", total=round(total / MB, 1), unit="MB", quiet=1
    ) as p:
        count = 0
        blobs_done = 0

        def advance(n: int) -> None:
            nonlocal count
            with lock:
                count += n
                p.update(f"{count / MB:.0f} of {total / MB:.0f} MB", n=n / MB)

        def send(b: arc.Blob, chunks: Iterator[bytes]) -> None:
            nonlocal blobs_done
            where = reg.start_upload(t.repo)
            where = reg.send(where, b, chunks, t.archive.path, advance)
            with lock:
                sent.append((where, b))
                blobs_done += 1
                p.update(f"blob {blobs_done} of {len(missing)} sent: {b.digest[:19]}")

        try:
            if t.archive.random_access:  # a plain tar: blobs read side by side
                reg.each(lambda b: send(b, t.archive.blob(b)), missing)
            else:  # a compressed one: in its order
                for b, chunks in t.archive.blobs(missing):
                    send(b, chunks)
        except BaseException:
            reg.each(lambda s: reg.cancel(s[0]), sent)
            raise
    reg.each(lambda s: reg.commit(s[0], s[1].digest), sent)
    for _, b in sent:
        holders[b.digest] = t.repo
        done.uploaded += 1
        done.bytes += b.size
    for b in mounts:
        where = reg.mount(t.repo, b.digest, holders[b.digest])
        if where is None:
            done.mounted += 1
            continue
        # The registry could not mount it: upload it after all.
        for b2, chunks in t.archive.blobs([b]):
            reg.commit(reg.send(where, b2, chunks, t.archive.path, lambda n: None), b2.digest)
        done.uploaded += 1
        done.bytes += b.size
    for data, media in t.image.children:
        reg.put_manifest(t.repo, arc.sha256(data), data, media)
    got = reg.put_manifest(t.repo, t.tag, t.image.manifest, t.image.media_type)
    if got != t.image.digest:
        raise RegistryError(f"{t.name}: the registry stored {got}, not {t.image.digest}")
    done.seconds = time.monotonic() - began
    return done


# -- reading the parameters' archives -----------------------------------------------------


def targets(entries: list[tuple[str, str | None]]) -> list[Target]:
    """Read every archive (a folder: each archive in it) and name its images: the name
    given, or the archive's own. Refuses, naming the file, an archive that is bad, holds
    no name for an image, or holds several images where one name is given."""
    out: list[Target] = []
    for path, name in entries:
        files = arc.archives_in(path)
        if not files:
            raise arc.ArchiveError(
                path, f"is a folder without archives ({', '.join(arc.SUFFIXES)})"
            )
        for f in files:
            out += _name_images(arc.read(f), name)
    return _one_image_per_name(out)


def _one_image_per_name(found: list[Target]) -> list[Target]:
    """The same name for two different images would leave it to whichever came last:
    refused. The same image twice (two archives of it) is kept once."""
    seen: dict[str, Target] = {}
    for t in found:
        other = seen.get(t.name)
        if other is None:
            seen[t.name] = t
        elif other.image.digest != t.image.digest:
            raise arc.ArchiveError(
                t.archive.path,
                f"its image {t.image.digest} would be named {t.name}, as {other.image.digest} "
                f"of {other.archive.path}: give one of them another name",
            )
    return list(seen.values())


def _name_images(a: arc.Archive, name: str | None) -> list[Target]:
    if name is not None:
        digests = {i.digest for i in a.images}
        if len(digests) > 1:
            own = ", ".join(sorted({i.name or "(no name)" for i in a.images}))
            raise arc.ArchiveError(
                a.path,
                f"holds {len(digests)} images ({own}) and one name, {name}, is given: "
                "leave name null to seed each under its own name",
            )
        repo, tag = arc.repository_of(name)
        return [Target(a, a.images[0], repo, tag)]
    out = []
    for image in a.images:
        if not image.name:
            raise arc.ArchiveError(
                a.path, "holds an image without a name: give one (seed_images[].name)"
            )
        repo, tag = arc.repository_of(image.name)
        out.append(Target(a, image, repo, tag))
    return out


# -- how the runner reaches the registry --------------------------------------------------


def client(rb: Runbook, transport: str = "auto") -> Registry:
    """The registry's API for this notebook: ``direct`` (HTTPS from the runner), ``ssh``
    (through the SSH connection), or ``auto`` (direct when it answers over verified TLS
    within 3 s, else SSH). Kept for the notebook."""
    key = f"seed client {transport}"
    if key in rb.cache:
        return rb.cache[key]
    p, ca, auth = rb.p, ca_pem(rb), first_user(rb)
    name, port = p.registry_host, p.registry_port
    direct = Registry(
        lambda: socket.create_connection((name, port), timeout=10),
        name,
        port,
        ca,
        auth,
        f"HTTPS from the runner to {p.registry}",
    )
    host = rb.main.host
    tunnelled = Registry(
        lambda: host.tunnel(port),  # type: ignore[attr-defined]
        name,
        port,
        ca,
        auth,
        f"through SSH to {host.name}'s 127.0.0.1:{port}",
    )
    if transport == "direct":
        chosen = direct
    elif transport == "ssh":
        chosen = tunnelled
    else:
        chosen = direct if _answers(direct) else tunnelled
    rb.cache[key] = chosen
    return chosen


def _answers(reg: Registry) -> bool:
    try:
        sock = socket.create_connection((reg.server_name, reg.port), timeout=3)
    except OSError:
        return False
    try:
        with reg.ctx.wrap_socket(sock, server_hostname=reg.server_name):
            return True
    except (OSError, ssl.SSLError):
        return False


# -- the steps ----------------------------------------------------------------------------


def _none_listed(rb: Runbook) -> str | None:
    return None if rb.p.seed_images else "seed_images is empty: no archive to seed"


def _entries(rb: Runbook) -> list[tuple[str, str | None]]:
    return [(str(Path(s.archive).expanduser()), s.name) for s in rb.p.seed_images]


def read_targets(rb: Runbook) -> list[Target]:
    """The images of ``seed_images``, read once per notebook."""
    if "seed targets" not in rb.cache:
        rb.cache["seed targets"] = targets(_entries(rb))
    return rb.cache["seed targets"]


@step("Image archives", skip=_none_listed)
def archives(rb: Runbook) -> Verified:
    """Read every archive of ``seed_images``: its images, platforms, blobs and names; each
    manifest names only blobs the archive holds, and every small blob is its digest."""
    found = read_targets(rb)
    details = {}
    for t in found:
        i = t.image
        details[t.name] = (
            f"{Path(t.archive.path).name} ({t.archive.compression}): {i.digest[:19]}…, "
            f"{', '.join(i.platforms)}, {i.layers} layer(s), {i.size / MB:.1f} MB"
        )
    files = len({t.archive.path for t in found})
    return Verified(f"{len(found)} image(s) in {files} archive(s), every manifest whole", details)


def _summary(rb: Runbook) -> dict[str, str]:
    return rb.cache.setdefault("seed summary", {})


@step("Seed the registry", skip=_none_listed)
def images(rb: Runbook, transport: str = "auto") -> Outcome:
    """Each image under its name in the registry: ``ok`` when the tag already points at
    the archive's manifest; otherwise pushed, or updated from the digest it pointed at."""
    found = read_targets(rb)
    if rb.dry_run and not ca_pem(rb):
        return Skip("check mode: no CA yet (notebook 05 has not run): the registry is not asked")
    reg = client(rb, transport)
    holders: dict[str, str] = {}
    summary = _summary(rb)
    actions = []
    held = dict(
        zip(
            [t.name for t in found],
            reg.each(lambda t: reg.manifest_digest(t.repo, t.tag), found),
            strict=True,
        )
    )
    for t, before, text in plan(found, held):
        if before == t.image.digest:
            summary[t.name] = text
            for b in t.image.blobs:
                holders.setdefault(b.digest, t.repo)
            continue
        summary[t.name] = f"would {text}"
        actions.append(Call(text, _pusher(reg, t, holders, before, summary)))

    def after(result: StepResult) -> None:
        result.details.update(summary)

    ok = sum(1 for v in summary.values() if v.startswith("ok"))
    return Plan(
        actions,
        changed=f"{len(actions)} image(s) seeded, {ok} already there ({reg.how})",
        unchanged=f"all {len(found)} image(s) are in the registry already ({reg.how})",
        details=dict(summary),
        after=after,
    )


def plan(found: list[Target], held: dict[str, str | None]) -> list[tuple[Target, str | None, str]]:
    """For each image, the digest its name points at now (``held``, by name) and what to
    do: ``ok: DIGEST``, ``push NAME DIGEST (...)`` or ``update NAME from OLD to NEW``."""
    out = []
    for t in found:
        before, new = held.get(t.name), t.image.digest
        if before == new:
            text = f"ok: {new}"
        elif before is None:
            text = f"push {t.name} {new} ({t.image.layers} layers, {t.image.size / MB:.1f} MB)"
        else:
            text = f"update {t.name} from {before} to {new}"
        out.append((t, before, text))
    return out


def _pusher(reg: Registry, t: Target, holders: dict[str, str], before, summary):  # noqa: ANN001, ANN202
    def fn(_host) -> None:  # noqa: ANN001
        done = push(reg, t, holders, before)
        verb = "updated" if before else "pushed"
        summary[t.name] = f"{verb}: {done.text(t.image.digest)}"

    return fn


@step("Pull by digest", check_only=True, skip=_none_listed)
def served(rb: Runbook, transport: str = "auto") -> Verified:
    """The registry serves every seeded image by its digest, each platform too, and its
    tag points at it: what ``docker pull NAME@DIGEST`` asks first."""
    reg = client(rb, transport)
    details = {}
    for t in read_targets(rb):
        for data, _ in [(t.image.manifest, None), *t.image.children]:
            digest = arc.sha256(data)
            if reg.manifest_digest(t.repo, digest) != digest:
                raise RegistryError(f"{t.repo}@{digest} is not served by the registry")
        tagged = reg.manifest_digest(t.repo, t.tag)
        if tagged != t.image.digest:
            raise RegistryError(f"{t.name} points at {tagged}, not {t.image.digest}")
        details[f"{rb.p.registry}/{t.repo}@{t.image.digest}"] = ", ".join(t.image.platforms)
    return Verified(f"{len(details)} image(s) served by digest and by tag", details)


def seed_one(rb: Runbook, path: str, name: str, transport: str = "auto") -> Outcome:
    """Seed one archive's image under ``name`` (notebook 08's ``verify_archive``): ``Found``
    when the tag already points at it, else ``Plan`` with its push."""
    t = _one(path, name)
    reg = client(rb, transport)
    before = reg.manifest_digest(t.repo, t.tag)
    if before == t.image.digest:
        return Found(f"{rb.p.registry}/{t.name} is {t.image.digest}, from {path}")
    summary: dict[str, str] = {}
    text = f"push {t.name} {t.image.digest} from {Path(path).name}"
    if before:
        text = f"update {t.name} from {before} to {t.image.digest}, from {Path(path).name}"

    def after(result: StepResult) -> None:
        result.details.update(summary)

    return Plan(
        [Call(text, _pusher(reg, t, {}, before, summary))],
        changed=f"{t.name} seeded from {path} ({reg.how})",
        after=after,
    )


def _one(path: str, name: str) -> Target:
    a = arc.read(Path(path).expanduser())
    repo, tag = arc.repository_of(name)
    if len({i.digest for i in a.images}) == 1:
        return Target(a, a.images[0], repo, tag)
    for i in a.images:
        if i.name and arc.repository_of(i.name) == (repo, tag):
            return Target(a, i, repo, tag)
    own = ", ".join(sorted(i.name or "(no name)" for i in a.images))
    raise arc.ArchiveError(path, f"holds {len(a.images)} images ({own}), none named {name}")
