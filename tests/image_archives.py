"""Image archives made by the tests themselves, with tarfile and json: the layouts of
``docker save`` before Docker 25 and from 25 on, and an OCI layout with an index for two
platforms. The layers are real tar files, so a registry's client can run them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    """A layer: a tar of the given files (fixed times, so the same files give the same
    digest)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def config(layers: list[bytes], arch: str = "amd64", cmd: list[str] | None = None) -> bytes:
    doc = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": cmd or ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
    }
    return json.dumps(doc, sort_keys=True).encode()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def legacy(images: list[tuple[list[str], list[bytes], bytes]]) -> dict[str, bytes]:
    """``docker save`` before 25: per image (names, layers, config)."""
    members: dict[str, bytes] = {}
    entries = []
    for names, layers, cfg in images:
        cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
        members[cfg_name] = cfg
        paths = []
        for x in layers:
            d = hashlib.sha256(b"v1" + x).hexdigest()
            members[f"{d}/VERSION"] = b"1.0"
            members[f"{d}/json"] = b"{}"
            members[f"{d}/layer.tar"] = x
            paths.append(f"{d}/layer.tar")
        entries.append({"Config": cfg_name, "RepoTags": names, "Layers": paths})
    members["manifest.json"] = json.dumps(entries).encode()
    return members


def oci_manifest(cfg: bytes, layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(cfg),
                "size": len(cfg),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(x),
                    "size": len(x),
                }
                for x in layers
            ],
        }
    ).encode()


def _blobs(members: dict[str, bytes], *datas: bytes) -> None:
    for d in datas:
        members["blobs/sha256/" + hashlib.sha256(d).hexdigest()] = d


def docker25(name: str, layers: list[bytes], cfg: bytes) -> dict[str, bytes]:
    """Docker 25's save: an OCI layout with index.json, and manifest.json beside it."""
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    m = oci_manifest(cfg, layers)
    _blobs(members, cfg, m, *layers)
    tag = name.rpartition(":")[2]
    members["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha(m),
                    "size": len(m),
                    "annotations": {
                        "io.containerd.image.name": f"docker.io/library/{name}",
                        "org.opencontainers.image.ref.name": tag,
                    },
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    members["manifest.json"] = json.dumps(
        [
            {
                "Config": "blobs/sha256/" + hashlib.sha256(cfg).hexdigest(),
                "RepoTags": [name],
                "Layers": ["blobs/sha256/" + hashlib.sha256(x).hexdigest() for x in layers],
            }
        ]
    ).encode()
    return members


def multi_platform(name: str | None, platforms: dict[str, list[bytes]]) -> dict[str, bytes]:
    """An OCI layout whose index.json names one image index of several platforms."""
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    children = []
    for arch, layers in platforms.items():
        cfg = config(layers, arch)
        m = oci_manifest(cfg, layers)
        _blobs(members, cfg, m, *layers)
        children.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(m),
                "size": len(m),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        }
    ).encode()
    _blobs(members, index)
    top = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha(index),
        "size": len(index),
    }
    if name:
        top["annotations"] = {"org.opencontainers.image.ref.name": name}
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    return members


def write(path: Path, members: dict[str, bytes], compression: str = "none") -> Path:
    """Write the members as a tar, plain or gzip, xz or zstd compressed."""
    data = _tar(members)
    if compression == "gzip":
        data = gzip.compress(data, mtime=0)
    elif compression == "xz":
        data = lzma.compress(data)
    elif compression == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path
