"""Paths root may trust: owned by root, writable by nobody else, no symbolic links, all the
way up from ``/``.

The registry's private key, its users' password file and the stack that root deploys live
under ``work_dir``. Whoever can rename an entry on that path (the owner of any folder on it,
or anyone when a folder is writable by group or others without the sticky bit) can swap
them for their own between two runs: add a user, serve their own certificate as Docker's
trust, or have root deploy their stack. So the runbook checks the whole path before it reads
or writes anything there, and refuses with what to do. A component that does not exist yet
is fine: root creates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import RunbookError
from .hosts import Host


def ancestors(*paths: str) -> list[str]:
    """Every path and every folder above it, each once, from ``/`` down.

    >>> ancestors("/home/docker/certs/a.key", "/home/docker/auth")
    ['/', '/home', '/home/docker', '/home/docker/certs', '/home/docker/certs/a.key', '/home/docker/auth']
    """
    out: dict[str, None] = {}
    for path in paths:
        parts = PurePosixPath(path).parts
        for n in range(1, len(parts) + 1):
            out[str(PurePosixPath(*parts[:n]))] = None
    return list(out)


class UnsafePath(RunbookError):
    """A path root would trust can be changed by someone else."""


@dataclass(frozen=True)
class Entry:
    path: str
    link: bool = False
    uid: int = 0
    user: str = "root"
    mode: int = 0o755


# One stat for every path: those missing are left out (root creates them), and a symbolic
# link is reported as one, not followed.
STAT_FORMAT = "%u|%U|%a|%F|%n"


def parse(text: str) -> list[Entry]:
    """Entries from ``stat -c STAT_FORMAT`` lines."""
    entries = []
    for line in text.splitlines():
        fields = line.split("|", 4)
        if len(fields) == 5:
            uid, user, mode, kind, path = fields
            link = kind == "symbolic link"
            entries.append(Entry(path, link=link, uid=int(uid), user=user, mode=int(mode, 8)))
    return entries


def problems(entries: list[Entry]) -> list[str]:
    """What makes each entry untrustworthy, in words; empty when root alone controls them."""
    found = []
    for e in entries:
        if e.link:
            found.append(f"{e.path} is a symbolic link")
        elif e.uid != 0:
            found.append(f"{e.path} is owned by {e.user} (uid {e.uid})")
        elif e.mode & 0o022 and not e.mode & 0o1000:
            who = (
                "group and others"
                if e.mode & 0o002 and e.mode & 0o020
                else ("others" if e.mode & 0o002 else "its group")
            )
            found.append(f"{e.path} is writable by {who} (mode {e.mode & 0o7777:o})")
    return list(dict.fromkeys(found))


def check(host: Host, parameter: str, *paths: str) -> None:
    """Refuse, naming the parameter, when anyone but root could change what is at
    ``paths`` (or on the way to them)."""
    every = ancestors(*paths)
    # Missing paths make stat fail: their absence is the answer, not an error.
    out = host.run(
        ["stat", "-c", STAT_FORMAT, "--", *every],
        check=False,
        display=f"stat every folder from / to {' '.join(paths)}",
    ).stdout
    found = problems(parse(out))
    if found:
        raise UnsafePath(
            f"parameter {parameter!r}: root would trust files that someone else can replace: "
            + "; ".join(found)
            + ". The registry's key, users and stack must live where only root can write, all "
            "the way up: choose another work_dir (for example /srv/registry), or make each "
            "folder on the path owned by root and not writable by group or others (and "
            "replace symbolic links by real folders), then run again."
        )
