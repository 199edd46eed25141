"""Seeding the registry from an archive: the runbook against ``docker load`` + ``docker
push`` and against ``skopeo copy``, on the same archive, against the local lab's registry
(parameters/lab-local.yaml; the registry must answer with that file's admin password).

    .venv/bin/python benchmarks/seed.py               # 3 alternating rounds
    .venv/bin/python benchmarks/seed.py --rounds 1    # one round

Each round makes, for each contender, a fresh ``docker save`` archive (Docker's layout
before 25: manifest.json and a layer.tar per layer) of --layers layers of random bytes,
--mb MB in all, so that no contender finds a blob the registry already has. Timed:

- runbook, direct: notebook 18's steps (the CA read over SSH, the archive read, the
  upload over HTTPS from this machine), in this process, from an open SSH connection;
- runbook, SSH: the same through the SSH connection (``SSHHost.tunnel``);
- runbook, again: the first archive seeded a second time (nothing to upload);
- docker: ``docker load -i`` + ``docker tag`` + ``docker push`` (logged in beforehand);
- skopeo: ``skopeo copy docker-archive:... docker://...`` (its credentials in an auth
  file, its trust in the registry's certs.d folder).

Prints medians and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runbook_lib import context, params, seed  # noqa: E402

PARAMS = ROOT / "parameters/lab-local.yaml"
REGISTRY = "localhost:5000"
CERTS = Path("/etc/docker/certs.d") / REGISTRY


def _tar_of_one_file(name: str, size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        t.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


def make_archive(path: Path, name: str, layers: int, total_mb: int) -> int:
    """A docker-save archive (before Docker 25) of random layers; returns its size."""
    import hashlib

    per = total_mb * 1_000_000 // layers
    blobs = [_tar_of_one_file(f"data/part{i}", per) for i in range(layers)]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/data/part0"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members = {config_name: config}
    paths = []
    for d, b in zip(diff_ids, blobs, strict=True):
        members[f"{d[7:]}/layer.tar"] = b
        paths.append(f"{d[7:]}/layer.tar")
    members["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": [name], "Layers": paths}]
    ).encode()
    with tarfile.open(path, "w") as t:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path.stat().st_size


def runbook(archive: Path, name: str, transport: str) -> tuple[float, str]:
    """Notebook 18's steps, timed from an open SSH connection (a run opens it while its
    kernel starts, before the first notebook): the CA's read, the archive's, the upload."""
    values = {**params.read_yaml(PARAMS), "seed_images": [{"archive": str(archive), "name": name}]}
    rb = context.Runbook(params.load(values), "18-seed")
    rb.recap = lambda: None
    rb.host.connect()
    began = time.monotonic()
    seed.archives(rb)
    result = seed.images(rb, transport)
    took = time.monotonic() - began
    rb.host.close()
    if result.status not in ("changed", "ok"):
        sys.exit(f"runbook seed failed: {result}")
    return took, result.status


def sh(argv: list[str], env: dict[str, str] | None = None) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"failed: {' '.join(argv)}\n{r.stdout}\n{r.stderr}")


def docker(archive: Path, name: str, env: dict[str, str]) -> float:
    began = time.monotonic()
    sh(["docker", "load", "-q", "-i", str(archive)], env)
    sh(["docker", "tag", name, f"{REGISTRY}/{name}"], env)
    sh(["docker", "push", "-q", f"{REGISTRY}/{name}"], env)
    took = time.monotonic() - began
    sh(["docker", "image", "rm", name, f"{REGISTRY}/{name}"], env)
    return took


def skopeo(archive: Path, name: str, authfile: Path) -> float:
    began = time.monotonic()
    sh(
        [
            "skopeo",
            "copy",
            "-q",
            "--authfile",
            str(authfile),
            "--dest-cert-dir",
            str(CERTS),
            f"docker-archive:{archive}",
            f"docker://{REGISTRY}/{name}",
        ]
    )
    return time.monotonic() - began


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--mb", type=int, default=220, help="the archive's layers, in MB")
    args = ap.parse_args()
    password = params.load(params.read_yaml(PARAMS)).registry_users["admin"].reveal()
    run = uuid.uuid4().hex[:6]
    times: dict[str, list[float]] = {k: [] for k in ("direct", "ssh", "again", "docker", "skopeo")}
    with tempfile.TemporaryDirectory(prefix="seed-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        config = work / "docker"
        config.mkdir()
        env = {**os.environ, "DOCKER_CONFIG": str(config)}
        subprocess.run(
            ["docker", "login", "-u", "admin", "--password-stdin", REGISTRY],
            input=password,
            text=True,
            capture_output=True,
            env=env,
            check=True,
        )
        authfile = work / "auth.json"
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        authfile.write_text(json.dumps({"auths": {REGISTRY: {"auth": token}}}))
        os.chmod(authfile, 0o600)
        size = 0
        for r in range(args.rounds):
            for who in ("direct", "docker", "skopeo", "ssh"):
                name = f"seedbench-{run}/{who}:{r}"
                archive = work / f"{who}-{r}.tar"
                size = make_archive(archive, name, args.layers, args.mb)
                if who in ("direct", "ssh"):
                    took, status = runbook(archive, name, who)
                    assert status == "changed", status
                    times[who].append(took)
                    if who == "direct":
                        took, status = runbook(archive, name, "direct")
                        assert status == "ok", status
                        times["again"].append(took)
                elif who == "docker":
                    times[who].append(docker(archive, name, env))
                else:
                    times[who].append(skopeo(archive, name, authfile))
                archive.unlink()
            print(
                f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v),
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    best = min(med["docker"], med["skopeo"])
    print(f"\narchive: {size / 1e6:.0f} MB, {args.layers} layers; medians of {args.rounds}")
    for k, label in (
        ("docker", "docker load + push"),
        ("skopeo", "skopeo copy"),
        ("direct", "runbook, HTTPS from the runner"),
        ("ssh", "runbook, through SSH"),
        ("again", "runbook, second seed (nothing to do)"),
    ):
        print(f"  {label:<38} {med[k]:6.2f} s  ({size / 1e6 / med[k]:6.1f} MB/s)")
    print(f"\nrunbook direct / the faster of docker and skopeo: {med['direct'] / best:.2f}")
    print(f"runbook SSH / the faster of docker and skopeo:    {med['ssh'] / best:.2f}")
    print(f"second seed / first seed (direct):                {med['again'] / med['direct']:.3f}")


if __name__ == "__main__":
    main()
