"""Backup and restore of the registry's images (notebooks 15 and 16).

A backup is the registry's volume, as a tarball on the machine running the runbook, taken
while the registry is read-only (:func:`runbook_lib.storage.read_only`), so that no push
lands halfway through it; pulls keep working. Beside it, under ``backup_dir``::

    HOST-20261202T101500Z.tar.gz   the volume's content (tar -C VOLUME -czf - .)
    HOST-20261202T101500Z.json     every repository and tag with its manifest digest
    HOST-20261202T101500Z.sha256   both files' SHA-256, as sha256sum writes them

The tarball streams over SSH straight into a temporary file, renamed once complete; the
``.sha256`` file comes last, so a backup without one is unfinished. ``sha256sum -c`` checks
it by hand.

A restore checks both checksums before anything on the host changes, then compares the
backup's tags with what the registry serves: when every digest matches there is nothing
to do. Otherwise the tarball is extracted beside the volume's folder (the same file system)
while the registry still runs, the registry is scaled to 0, the new folder swapped in with
two renames, and the registry scaled back (notebook 07 would too) and waited for; its tags are then compared with the backup's again. The registry
must already be deployed (notebooks 01 to 07), on this host or a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import storage
from .context import Runbook
from .errors import ParameterError, RunbookError, WaitTimeout
from .params import EXAMPLES
from .registry import deployed
from .steps import Call, Found, Outcome, Plan, Verified, step

FORMAT = 1


# -- pure: names, checksums, comparisons -------------------------------------------------------


def backup_name(registry_host: str, now: datetime) -> str:
    """``docker.example.com-20261202T101500Z``: the registry and the time, in UTC."""
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", registry_host)
    return f"{safe}-{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"


def companions(tarball: Path) -> tuple[Path, Path]:
    """The ``.json`` listing and the ``.sha256`` file beside a backup's tarball."""
    stem = tarball.name.removesuffix(".tar.gz")
    return tarball.with_name(f"{stem}.json"), tarball.with_name(f"{stem}.sha256")


def parse_checksums(text: str) -> dict[str, str]:
    """sha256sum's lines (``HEX  NAME``, or ``HEX *NAME``) as name -> hex digest."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
        if m:
            out[m[2]] = m[1]
    return out


def differences(wanted: storage.Content, found: storage.Content) -> list[str]:
    """Each backed-up tag the registry does not serve with the same digest."""
    out = []
    for repo, tags in sorted(wanted.items()):
        for tag, digest in sorted(tags.items()):
            now = found.get(repo, {}).get(tag)
            if now != digest:
                out.append(f"{repo}:{tag} is {now or 'missing'}, the backup has {digest}")
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _HashingFile:
    """A file being written, with the SHA-256 and size of what went in."""

    def __init__(self, f):  # noqa: ANN001 (a binary file)
        self.f, self.sha256, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.f.write(data)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


# -- notebook 15 --------------------------------------------------------------------------------


@step("Backup")
def backup(rb: Runbook) -> Outcome:
    """The registry's volume, read-only meanwhile, to a tarball under ``backup_dir``."""
    folder = Path(rb.p.backup_dir).expanduser()
    name = backup_name(rb.p.registry_host, datetime.now(timezone.utc))
    tarball = folder / f"{name}.tar.gz"
    listing, sums = companions(tarball)
    volume = storage.volume_path(rb)
    tar = ["tar", "-C", volume, "-czf", "-", "."]
    record: dict[str, Any] = {}

    def run(_host) -> None:  # noqa: ANN001
        folder.mkdir(parents=True, exist_ok=True)
        done: list[str] = []
        record["done"] = done
        part = tarball.with_name(f".{tarball.name}.part")
        try:
            with storage.read_only(rb, done):
                content = storage.content(rb, refresh=True)
                with open(part, "wb") as f:
                    sink = _HashingFile(f)
                    rb.host.stream(tar, sink=sink)  # type: ignore[arg-type]
                    f.flush()
                    os.fsync(f.fileno())
                done.append(f"{shlex.join(tar)} > {tarball}")
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        document = {
            "format": FORMAT,
            "registry": rb.p.registry,
            "host": rb.host.name,
            "volume": rb.names.registry_volume,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "repositories": content,
        }
        text = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
        _write_atomically(listing, text)
        part.replace(tarball)
        digest = sink.sha256.hexdigest()
        sums_text = (
            f"{digest}  {tarball.name}\n{hashlib.sha256(text).hexdigest()}  {listing.name}\n"
        )
        _write_atomically(sums, sums_text.encode())
        record.update(size=sink.size, sha256=digest, content=content)

    def after(result) -> None:  # noqa: ANN001 (a StepResult)
        content = record["content"]
        tags = sum(len(t) for t in content.values())
        result.actions = record["done"]
        result.reason = (
            f"{tarball} written: {storage.human(record['size'])}, {len(content)} "
            f"repositories, {tags} tags"
        )
        result.details.update(
            {
                "tarball": str(tarball),
                "sha256": record["sha256"],
                "tags and digests": str(listing),
                **{f"repository {r}": v for r, v in storage.table(content).items()},
            }
        )

    return Plan(
        [
            Call(
                f"registry read-only; {shlex.join(tar)} over SSH to {tarball}; writable again",
                run,
            )
        ],
        changed=f"{tarball} to write",
        after=after,
    )


# -- notebook 16 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    tarball: Path
    listing: Path
    content: storage.Content
    size: int
    sha256: str


def _refuse(value: object, problem: str) -> ParameterError:
    return ParameterError("restore_from", value, problem, EXAMPLES["restore_from"])


def read_backup(restore_from: str | None) -> Backup:
    """The backup ``restore_from`` names, its checksums verified (nothing on a host yet)."""
    if not restore_from:
        raise _refuse(
            restore_from, "notebook 16 needs the backup to restore: a .tar.gz notebook 15 wrote"
        )
    tarball = Path(restore_from).expanduser()
    if not tarball.name.endswith(".tar.gz") or not tarball.is_file():
        raise _refuse(restore_from, "is not a .tar.gz file that notebook 15 wrote")
    listing, sums = companions(tarball)
    missing = [p.name for p in (listing, sums) if not p.is_file()]
    if missing:
        raise _refuse(
            restore_from, f"{', '.join(missing)} missing beside it: an unfinished or partial backup"
        )
    wanted = parse_checksums(sums.read_text())
    for path in (tarball, listing):
        if path.name not in wanted:
            raise _refuse(restore_from, f"{sums.name} has no checksum of {path.name}")
        if file_sha256(path) != wanted[path.name]:
            raise _refuse(
                restore_from,
                f"{path.name} does not match its checksum in {sums.name}: the backup is "
                "damaged (or was changed); nothing was restored",
            )
    document = json.loads(listing.read_text())
    if document.get("format") != FORMAT:
        raise _refuse(restore_from, f"{listing.name} is not a listing this runbook wrote")
    return Backup(
        tarball, listing, document["repositories"], tarball.stat().st_size, wanted[tarball.name]
    )


@step("Backup file")
def check_backup(rb: Runbook) -> Verified:
    b = read_backup(rb.p.restore_from)
    rb.cache["backup"] = b
    tags = sum(len(t) for t in b.content.values())
    return Verified(
        f"{b.tarball}: checksum verified ({storage.human(b.size)}); {len(b.content)} "
        f"repositories, {tags} tags",
        details={"sha256": b.sha256, **storage.table(b.content)},
    )


def _current(rb: Runbook) -> storage.Content | None:
    """What the registry serves now, or None when it does not answer."""
    try:
        return storage.content(rb, refresh=True)
    except (OSError, RunbookError):
        return None


_STOPPED = r"""
docker ps -q --filter "label=com.docker.swarm.service.name=$1"
"""


def _wait_stopped(rb: Runbook, timeout: float = 120.0) -> None:
    name, start = rb.names.registry_service, time.monotonic()
    while rb.host.sh(_STOPPED, name, display=f"docker ps (containers of {name})").stdout.strip():
        if time.monotonic() - start > timeout:
            raise WaitTimeout(f"{name}'s container still runs {timeout:.0f} s after scaling to 0")
        time.sleep(0.5)


# Extracts standard input into a new folder beside the volume's (the same file system),
# with that folder's owner and mode; prints the new folder. $1: the volume's folder.
_EXTRACT = r"""
set -e
new=$(mktemp -d "$1.restore.XXXXXX")
trap 'rm -rf -- "$new"' EXIT
tar -xzf - -C "$new" --numeric-owner
chown --reference="$1" "$new"
chmod --reference="$1" "$new"
trap - EXIT
echo "$new"
"""

# Puts $2 in the place of the volume's folder $1 with two renames (the first one undone
# if the second fails), then removes the old content.
_SWAP = r"""
set -e
old="$1.old.${2##*.}"
mv -T -- "$1" "$old"
mv -T -- "$2" "$1" || { mv -T -- "$old" "$1"; exit 1; }
rm -rf -- "$old"
"""


@step("Restore")
def restore(rb: Runbook) -> Outcome:
    b: Backup = rb.cache.get("backup") or read_backup(rb.p.restore_from)
    now = _current(rb)
    if now is not None and not differences(b.content, now):
        tags = sum(len(t) for t in b.content.values())
        return Found(f"the registry serves every tag of the backup ({tags}) with its digest")
    volume = storage.volume_path(rb)
    service = rb.names.registry_service
    _, _, replicas, _ = deployed(rb)
    if replicas is None:
        raise RunbookError(f"{service} is not deployed: run notebooks 01 to 07 first")
    back_to = replicas or 1
    record: dict[str, Any] = {"done": []}
    done: list[str] = record["done"]

    def run(_host) -> None:  # noqa: ANN001
        with open(b.tarball, "rb") as f:
            new = rb.host.stream(
                ["sh", "-c", _EXTRACT, "sh", volume],
                source=f,
                display=f"extract {b.tarball.name} beside {volume}",
            ).stdout.strip()
        done.append(f"{b.tarball.name} extracted to {new} (the registry still running)")
        swapped = False
        scale = ["docker", "service", "scale", "--detach", f"{service}=0"]
        try:
            rb.host.run(scale)
            done.append(shlex.join(scale))
            _wait_stopped(rb)
            rb.host.sh(_SWAP, volume, new, display=f"mv {volume} aside; mv {new} {volume}")
            swapped = True
            done.append(f"{new} swapped in for {volume}, the old content removed")
        finally:
            if not swapped:
                rb.host.run(["rm", "-rf", "--", new], check=False)
            up = ["docker", "service", "scale", "--detach", f"{service}={back_to}"]
            rb.host.run(up)
            waited = storage.wait_mode(rb, read_only=False)
            done.append(f"{shlex.join(up)}: answering (after {waited:.0f} s)")
        left = differences(b.content, storage.content(rb, refresh=True))
        if left:
            raise RunbookError("restored, yet the registry differs: " + "; ".join(left[:5]))

    def after(result) -> None:  # noqa: ANN001 (a StepResult)
        result.actions = done
        tags = sum(len(t) for t in b.content.values())
        result.reason = f"restored {b.tarball.name}: all {tags} tags serve the backup's digests"

    why = (
        "the registry does not answer"
        if now is None
        else "; ".join(differences(b.content, now)[:3])
    )
    parent = posixpath.dirname(volume)
    return Plan(
        [
            Call(
                f"extract {b.tarball.name} in {parent}; docker service scale {service}=0; "
                f"swap it in for {volume}; scale back to {back_to}; wait until it answers",
                run,
            )
        ],
        changed=f"to restore: {why}",
        after=after,
    )
