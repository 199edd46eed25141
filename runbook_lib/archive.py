"""Image archives on the runner: what ``docker save`` and OCI layout tarballs hold (pure).

Three layouts are read, plain or compressed (gzip, zstd, xz; told by their first bytes):

- Docker's ``docker save`` before 25: ``manifest.json`` lists each image's config file
  (``<id>.json``), its names (``RepoTags``) and its layers (``<id>/layer.tar``, plain tar
  files whose sha256 is the config's ``rootfs.diff_ids``). No registry manifest is stored:
  one is made here, an OCI image manifest with uncompressed layers, as Docker 25's save
  writes (moby ``image/tarexport/save.go``), always the same bytes for the same image.
- Docker 25 and later: an OCI layout (``oci-layout``, ``index.json``, ``blobs/sha256/``)
  and a ``manifest.json`` beside it. ``index.json`` is read; where one of its manifests
  lists fewer layers than its config's ``rootfs.diff_ids`` (moby 25.0.0's save wrote only
  the foreign layers there), the image is taken from ``manifest.json`` instead.
- An OCI layout: ``index.json`` names each image (annotation ``io.containerd.image.name``
  or ``org.opencontainers.image.ref.name``); an entry that is an image index keeps every
  platform.

Reading has two passes. :func:`read` walks the archive once: every member's place and
size; the small ones (manifests, configs) kept and their digests checked; every manifest
checked to name only blobs the archive holds, at their sizes. :meth:`Archive.blobs` then
reads the blobs a registry lacks, in the archive's order (seeking in a plain tar, streaming
a compressed one), and :class:`Hashed` checks each one's digest as it goes. Every refusal
is an :class:`ArchiveError` naming the file and the reason.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import RunbookError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
#: What an archive's file name ends with, when a folder of archives is given.
SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tar.xz", ".txz")

# Members kept in memory by the first pass (manifests, configs, small layers).
KEEP = 1 << 20
CHUNK = 1 << 20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ArchiveError(RunbookError):
    """An archive that cannot be seeded: names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Blob:
    """A blob an image needs: its digest and size, and the archive member that holds it."""

    digest: str
    size: int
    member: str
    media_type: str = ""


@dataclass
class Image:
    """One image of an archive, as a registry stores it.

    ``manifest`` is the top document (an image manifest, or an index for several
    platforms), PUT under the tag; ``children`` are an index's manifests, PUT by digest
    first; ``blobs`` are the configs and layers of every platform, each once."""

    name: str | None  # the archive's own name for it, e.g. hello-world:latest
    manifest: bytes
    media_type: str
    children: list[tuple[bytes, str]] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)

    @property
    def layers(self) -> int:
        return sum(1 for b in self.blobs if not _is_config(b.media_type))


@dataclass(frozen=True)
class Member:
    offset: int  # of its data, in the (decompressed) tar stream
    size: int


@dataclass
class Archive:
    """What :func:`read` found in one archive file."""

    path: str
    compression: str  # "none", "gzip", "zstd" or "xz"
    images: list[Image]
    members: dict[str, Member]
    kept: dict[str, bytes]

    def blobs(self, wanted: Iterable[Blob]) -> Iterator[tuple[Blob, Iterator[bytes]]]:
        """Each wanted blob and an iterator over its bytes, in the archive's order. Each
        iterator must be read to its end before the next blob is asked for."""
        by_member: dict[str, list[Blob]] = {}
        for b in wanted:
            by_member.setdefault(b.member, []).append(b)
        if not by_member:
            return
        kept = {m: bs for m, bs in by_member.items() if m in self.kept}
        for member, bs in kept.items():
            for b in bs:
                yield b, iter([self.kept[member]])
        rest = {m: bs for m, bs in by_member.items() if m not in kept}
        if not rest:
            return
        if self.compression == "none":
            with open(self.path, "rb") as f:
                for member in sorted(rest, key=lambda m: self.members[m].offset):
                    m = self.members[member]
                    for b in rest[member]:
                        f.seek(m.offset)
                        yield b, _read_exactly(f, m.size, self.path, member)
            return
        with _open(self.path) as raw, _tar_stream(raw, self.path) as tar:
            for info in _members(tar, self.path):
                name = _clean(info.name)
                if name not in rest or not info.isfile():
                    continue
                b = rest.pop(name)[0]  # a member is one digest: one blob
                yield b, _read_exactly(tar.extractfile(info), info.size, self.path, name)
                if not rest:
                    return
        if rest:
            raise ArchiveError(self.path, f"{next(iter(rest))} vanished while reading")

    @property
    def random_access(self) -> bool:
        """Whether :meth:`blob` reads any blob at once (a plain tar), so that several can
        be read side by side; a compressed archive is read in its order (:meth:`blobs`)."""
        return self.compression == "none"

    def blob(self, b: Blob) -> Iterator[bytes]:
        """One blob's bytes, from its own file handle (plain tars only)."""
        if b.member in self.kept:
            yield self.kept[b.member]
            return
        if not self.random_access:
            raise ValueError("a compressed archive is read in order: use blobs()")
        m = self.members[b.member]
        with open(self.path, "rb") as f:
            f.seek(m.offset)
            yield from _read_exactly(f, m.size, self.path, b.member)


class Hashed:
    """Counts and hashes the bytes of a blob as they pass; :meth:`check` refuses a blob
    whose content is not its digest."""

    def __init__(self, blob: Blob, path: str):
        self.blob, self.path = blob, path
        self.h = hashlib.sha256()
        self.count = 0

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.h.update(chunk)
            self.count += len(chunk)
            yield chunk

    def check(self) -> None:
        got = "sha256:" + self.h.hexdigest()
        if self.count != self.blob.size or got != self.blob.digest:
            raise ArchiveError(self.path, mismatch(self.blob, got, self.count))


def mismatch(blob: Blob, got: str, size: int) -> str:
    return (
        f"{blob.member}: its content is {got} ({size} bytes), not {blob.digest} "
        f"({blob.size} bytes) as the manifest says: the archive is damaged"
    )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: dict[str, Any]) -> bytes:
    """A manifest made here, always the same bytes for the same content."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def archives_in(path: str | os.PathLike) -> list[Path]:
    """The archive itself, or every archive in a folder (by name, see ``SUFFIXES``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return sorted(c for c in p.iterdir() if c.is_file() and c.name.lower().endswith(SUFFIXES))
    return [p]


def compression_of(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return "none"


def _open(path: str) -> IO[bytes]:
    """The archive's tar stream, decompressed as its first bytes say."""
    f = open(path, "rb")  # noqa: SIM115 (returned)
    kind = compression_of(f.read(6))
    f.seek(0)
    if kind == "gzip":
        return _Closing(gzip.GzipFile(fileobj=f), f)
    if kind == "xz":
        return _Closing(lzma.LZMAFile(f), f)
    if kind == "zstd":
        import zstandard

        return _Closing(zstandard.ZstdDecompressor().stream_reader(f, read_size=CHUNK), f)
    return f


class _Closing:
    """A decompressing reader that closes its file too."""

    def __init__(self, reader: Any, f: IO[bytes]):
        self._r, self._f = reader, f

    def read(self, n: int = -1) -> bytes:
        return self._r.read(n)

    def close(self) -> None:
        self._r.close()
        self._f.close()

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _tar_stream:  # noqa: N801 (used as a function)
    """``tarfile`` over a stream, its errors as the archive's."""

    def __init__(self, raw: Any, path: str):
        self.raw, self.path = raw, path

    def __enter__(self) -> tarfile.TarFile:
        try:
            self.tar = tarfile.open(fileobj=self.raw, mode="r|")  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as exc:
            raise ArchiveError(self.path, f"not a tar archive ({_why(exc)})") from None
        except Exception as exc:  # zstandard.ZstdError
            raise ArchiveError(self.path, f"cannot be read: {_why(exc)}") from None
        return self.tar

    def __exit__(self, *exc: object) -> None:
        self.tar.close()


def _members(tar: tarfile.TarFile, path: str) -> Iterator[tarfile.TarInfo]:
    """The members of a tar, with a damaged archive's errors as an :class:`ArchiveError`."""
    while True:
        try:
            info = tar.next()
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as exc:
            raise ArchiveError(path, f"is truncated or damaged ({_why(exc)})") from None
        except Exception as exc:  # zstandard.ZstdError
            raise ArchiveError(path, f"is truncated or damaged ({_why(exc)})") from None
        if info is None:
            return
        yield info


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _read_exactly(f: Any, size: int, path: str, member: str) -> Iterator[bytes]:
    left = size
    while left:
        try:
            chunk = f.read(min(CHUNK, left))
        except (EOFError, OSError, lzma.LZMAError, tarfile.TarError) as exc:
            raise ArchiveError(path, f"is truncated or damaged in {member} ({_why(exc)})") from None
        except Exception as exc:  # zstandard.ZstdError
            raise ArchiveError(path, f"is truncated or damaged in {member} ({_why(exc)})") from None
        if not chunk:
            raise ArchiveError(path, f"is truncated: {member} ends {left} bytes early")
        left -= len(chunk)
        yield chunk


def _clean(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def _is_config(media_type: str) -> bool:
    return "config" in media_type or media_type.endswith("container.image.v1+json")


def is_config(media_type: str) -> bool:
    """An image's configuration (its digest is the image's ID in Docker), not a layer."""
    return _is_config(media_type)


def open_decompressed(path: str | os.PathLike) -> IO[bytes]:
    """The archive's tar stream, decompressed as its first bytes say (for ``docker load``,
    which cannot read every compression the archive may have)."""
    return _open(str(path))


# -- the first pass ----------------------------------------------------------------------


def read(path: str | os.PathLike) -> Archive:
    """Read an archive's table and its manifests; refuse it, naming the reason, when it is
    not a readable image archive or when a manifest names a blob it does not hold."""
    path = str(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            kind = compression_of(f.read(6))
    except OSError as exc:
        raise ArchiveError(path, f"cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise ArchiveError(path, "is empty")
    members: dict[str, Member] = {}
    kept: dict[str, bytes] = {}
    if kind == "none":
        try:
            tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed below)
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveError(path, f"not a tar archive ({_why(exc)})") from None
        with tar:
            for info in _members(tar, path):
                if not info.isfile():
                    continue
                name = _clean(info.name)
                if info.offset_data + info.size > size:
                    raise ArchiveError(
                        path,
                        f"is truncated: {name} needs {info.size} bytes from offset "
                        f"{info.offset_data}, the file ends at {size}",
                    )
                members[name] = Member(info.offset_data, info.size)
                if info.size <= KEEP and _worth_keeping(name):
                    src = tar.extractfile(info)
                    kept[name] = b"".join(_read_exactly(src, info.size, path, name))
    else:
        with _open(path) as raw, _tar_stream(raw, path) as tar:
            for info in _members(tar, path):
                if not info.isfile():
                    continue
                name = _clean(info.name)
                members[name] = Member(info.offset_data, info.size)
                if info.size <= KEEP:
                    src = tar.extractfile(info)
                    kept[name] = b"".join(_read_exactly(src, info.size, path, name))
    archive = Archive(path, kind, [], members, kept)
    archive.images = _images(archive)
    return archive


def _worth_keeping(name: str) -> bool:
    # In a plain tar a small layer is read when needed; JSON documents are read now.
    return name.endswith(".json") or name.startswith("blobs/") or "/" not in name


def _json(a: Archive, member: str) -> Any:
    if member not in a.members:
        raise ArchiveError(a.path, f"{member} is missing: {_layout_hint(a)}")
    data = a.kept.get(member)
    if data is None:
        raise ArchiveError(
            a.path, f"{member} is {a.members[member].size} bytes: too large for JSON"
        )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(a.path, f"{member} is not valid JSON ({exc})") from None


def _layout_hint(a: Archive) -> str:
    if "manifest.json" not in a.members and "index.json" not in a.members:
        return "not an image archive (no manifest.json, no index.json)"
    return "the archive is incomplete"


def _images(a: Archive) -> list[Image]:
    if "index.json" not in a.members and "manifest.json" not in a.members:
        shown = ", ".join(sorted(a.members)[:5]) or "nothing"
        raise ArchiveError(
            a.path,
            f"not an image archive: neither manifest.json (docker save) nor index.json "
            f"(OCI layout) is in it (it holds {shown})",
        )
    if "index.json" in a.members:
        return _from_index(a)
    return _from_docker_manifest(a)


def _from_docker_manifest(a: Archive, only: set[str] | None = None) -> list[Image]:
    """``manifest.json``: one entry per image, with its config, names and layer files."""
    entries = _json(a, "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(a.path, "manifest.json is not a list of images")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str):
            raise ArchiveError(a.path, f"manifest.json entry {i} has no Config")
        config_member = _clean(e["Config"])
        if only is not None and config_member not in only:
            continue
        config = _blob_bytes(a, config_member, None)
        config_digest = sha256(config)
        expected = _digest_in_name(config_member)
        if expected and expected != config_digest:
            raise ArchiveError(
                a.path,
                mismatch(Blob(expected, len(config), config_member), config_digest, len(config)),
            )
        diff_ids = _diff_ids(a, config_member, config)
        layers = e.get("Layers") or []
        if len(layers) != len(diff_ids):
            raise ArchiveError(
                a.path,
                f"manifest.json entry {i} lists {len(layers)} layers, its config "
                f"{config_member} {len(diff_ids)}",
            )
        blobs = [Blob(config_digest, len(config), config_member, OCI_CONFIG)]
        descs = []
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            member = _clean(str(layer))
            if member not in a.members:
                raise ArchiveError(a.path, f"a manifest names {member}, which is missing")
            b = Blob(diff_id, a.members[member].size, member, OCI_LAYER)
            blobs.append(b)
            descs.append({"mediaType": OCI_LAYER, "digest": diff_id, "size": b.size})
        manifest = canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": descs,
            }
        )
        names = [t for t in (e.get("RepoTags") or []) if isinstance(t, str)]
        platform = _platform_of_config(config)
        for name in names or [None]:
            out.append(Image(name, manifest, OCI_MANIFEST, [], _unique(blobs), [platform]))
    return out


def _digest_in_name(member: str) -> str | None:
    stem = posixpath.basename(member).removesuffix(".json")
    return f"sha256:{stem}" if re.fullmatch(r"[0-9a-f]{64}", stem) else None


def _diff_ids(a: Archive, member: str, config: bytes) -> list[str]:
    try:
        doc = json.loads(config)
        ids = doc["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise ArchiveError(
            a.path, f"{member} is not an image config (no rootfs.diff_ids)"
        ) from None
    if not isinstance(ids, list) or not all(isinstance(d, str) and _DIGEST.match(d) for d in ids):
        raise ArchiveError(a.path, f"{member}: rootfs.diff_ids are not sha256 digests")
    return ids


def _platform_of_config(config: bytes) -> str:
    try:
        doc = json.loads(config)
    except ValueError:
        return "?"
    return _platform(doc if isinstance(doc, dict) else {})


def _platform(p: dict[str, Any]) -> str:
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return f"{text}/{p['variant']}" if p.get("variant") else text


def _unique(blobs: list[Blob]) -> list[Blob]:
    seen: dict[str, Blob] = {}
    for b in blobs:
        seen.setdefault(b.digest, b)
    return list(seen.values())


def _blob_member(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def _blob_bytes(a: Archive, member: str, digest: str | None) -> bytes:
    """A small blob (a manifest, a config), its digest checked when one is named."""
    if member not in a.members:
        raise ArchiveError(a.path, f"a manifest names {member}, which is missing")
    data = a.kept.get(member)
    if data is None:
        raise ArchiveError(a.path, f"{member} is {a.members[member].size} bytes: too large")
    if digest is not None and sha256(data) != digest:
        raise ArchiveError(
            a.path, mismatch(Blob(digest, len(data), member), sha256(data), len(data))
        )
    return data


def _descriptor(a: Archive, d: Any, where: str) -> tuple[str, int, str]:
    if not isinstance(d, dict):
        raise ArchiveError(a.path, f"{where}: not a descriptor")
    digest, size, media = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ArchiveError(a.path, f"{where}: digest {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or size < 0:
        raise ArchiveError(a.path, f"{where}: size {size!r} is not a size")
    member = _blob_member(digest)
    if member not in a.members:
        raise ArchiveError(a.path, f"{where} names {digest}, whose blob {member} is missing")
    if a.members[member].size != size:
        raise ArchiveError(
            a.path,
            f"{where} says {digest} has {size} bytes; {member} has {a.members[member].size}",
        )
    return digest, size, str(media)


def _from_index(a: Archive) -> list[Image]:
    index = _json(a, "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(a.path, "index.json lists no manifests")
    out: list[Image] = []
    legacy: set[str] = set()  # configs to take from manifest.json instead (moby 25.0.0)
    for i, d in enumerate(entries):
        where = f"index.json manifest {i}"
        digest, _size, media = _descriptor(a, d, where)
        ann = d.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
        data = _blob_bytes(a, _blob_member(digest), digest)
        doc = _doc(a, data, _blob_member(digest))
        media = doc.get("mediaType") or media
        if media in INDEXES or "manifests" in doc:
            children, blobs, platforms = [], [], []
            for j, child in enumerate(doc.get("manifests") or []):
                cdigest, _, cmedia = _descriptor(a, child, f"{where}, platform {j}")
                cdata = _blob_bytes(a, _blob_member(cdigest), cdigest)
                cdoc = _doc(a, cdata, _blob_member(cdigest))
                blobs += _manifest_blobs(a, cdoc, f"{where}, platform {j}")
                children.append((cdata, cdoc.get("mediaType") or cmedia or OCI_MANIFEST))
                platforms.append(_platform(child.get("platform") or {}))
            if not children:
                raise ArchiveError(a.path, f"{where} is an index without manifests")
            out.append(Image(name, data, media or OCI_INDEX, children, _unique(blobs), platforms))
            continue
        if short := _short_of_layers(a, doc):
            if "manifest.json" in a.members:
                legacy.add(short)
                continue
            raise ArchiveError(a.path, f"{where} lists fewer layers than its config's diff_ids")
        blobs = _manifest_blobs(a, doc, where)
        platform = _platform(d.get("platform") or {}) if d.get("platform") else None
        if platform is None:
            platform = _platform_of_config(a.kept.get(blobs[0].member, b"{}"))
        out.append(Image(name, data, media or OCI_MANIFEST, [], blobs, [platform]))
    if legacy:
        out += _from_docker_manifest(a, only=legacy)
    return out


def _doc(a: Archive, data: bytes, member: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError(a.path, f"{member} is not a manifest (not JSON)") from None
    if not isinstance(doc, dict):
        raise ArchiveError(a.path, f"{member} is not a manifest")
    return doc


def _manifest_blobs(a: Archive, doc: dict[str, Any], where: str) -> list[Blob]:
    if "config" not in doc or not isinstance(doc.get("layers"), list):
        raise ArchiveError(a.path, f"{where} is not an image manifest (no config and layers)")
    cd, cs, cm = _descriptor(a, doc["config"], f"{where}, config")
    _blob_bytes(a, _blob_member(cd), cd)  # small: checked now
    blobs = [Blob(cd, cs, _blob_member(cd), cm or OCI_CONFIG)]
    for k, layer in enumerate(doc["layers"]):
        ld, ls, lm = _descriptor(a, layer, f"{where}, layer {k}")
        blobs.append(Blob(ld, ls, _blob_member(ld), lm or OCI_LAYER))
    return blobs


def _short_of_layers(a: Archive, doc: dict[str, Any]) -> str | None:
    """The config's member when an image manifest lists fewer layers than its config has
    diff_ids (what moby 25.0.0's save wrote into index.json), else None."""
    config = doc.get("config") if isinstance(doc.get("config"), dict) else None
    if config is None or not isinstance(doc.get("layers"), list):
        return None
    member = _blob_member(str(config.get("digest", "")))
    data = a.kept.get(member)
    if data is None:
        return None
    try:
        ids = json.loads(data)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        return None
    return member if len(doc["layers"]) < len(ids) else None


# -- names --------------------------------------------------------------------------------


def repository_of(name: str) -> tuple[str, str]:
    """Where an archive's own name goes in the private registry: its repository and tag,
    without the registry it came from (``docker.io/library/`` is Docker's default):
    ``docker.io/library/hello-world:latest`` -> ``hello-world``, ``latest``;
    ``ghcr.io/org/app:1.2`` -> ``org/app``, ``1.2``; ``app`` -> ``app``, ``latest``."""
    name = name.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest
        if first in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            name = name.removeprefix("library/")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"
