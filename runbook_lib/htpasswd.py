"""The registry's user file: ``user:bcrypt-hash`` lines, parsed, planned and rendered.

The registry (distribution) accepts only bcrypt hashes. The tutorial appended
``htpasswd -Bbn USER PASSWORD`` output to the file, which put the password in a process's
arguments and needed an ``htpasswd`` binary that registry images no longer ship; here the
hashes are made in the runbook's own process.

Cost. The registry checks the password with bcrypt on every request it receives (Docker
sends the credentials with each request; a push or pull makes dozens). Measured on a
2-vCPU AMD EPYC host, hashing and verifying take the same time:

=====  ===========
cost   per request
=====  ===========
5      2 ms
10     62 ms
12     250 ms
=====  ===========

:data:`DEFAULT_COST` is 10 (also Go's default): a pull pays tens of milliseconds per
request instead of a quarter of a second, and a stolen file still costs an attacker about
30 times more work per guess than at cost 5. The file is readable only by root on the host
and is handed to the registry as a swarm secret, which is why a higher cost buys little.

A user whose stored hash already matches the wanted password keeps that hash, so running
the step again changes nothing; a different cost alone does not cause a rehash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import bcrypt

from .errors import ParameterError, RunbookError

DEFAULT_COST = 10
MIN_COST, MAX_COST = 4, 16
# Anyone who reaches the port may guess online, and whoever steals the password file may
# guess offline at bcrypt's pace: 12 characters, as Portainer asks and NIST SP 800-63B
# suggests where a password is the only factor, put both out of reach.
MIN_PASSWORD_LENGTH = 12
# bcrypt ignores (and the bcrypt library refuses) anything past the 72nd byte.
MAX_PASSWORD_BYTES = 72
HIDDEN = "<hidden>"


class HtpasswdError(RunbookError, ValueError):
    """The htpasswd file cannot be parsed; names the line, never its content."""


def validate_username(name: str) -> None:
    """Raise :class:`ParameterError` unless ``name`` can be a registry user name."""
    if not isinstance(name, str) or not name:
        raise ParameterError("registry_users", name, "a user name cannot be empty", "'alice'")
    if len(name) > 255:
        raise ParameterError("registry_users", name, "a user name has at most 255 characters")
    if ":" in name:
        raise ParameterError("registry_users", name, "a user name cannot contain ':'", "'alice'")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise ParameterError(
            "registry_users", name, "a user name cannot contain spaces or control characters"
        )


def validate_password(user: str, password: str, min_length: int = MIN_PASSWORD_LENGTH) -> None:
    """Raise :class:`ParameterError` unless ``password`` is usable; never shows the password."""

    def fail(problem: str) -> ParameterError:
        return ParameterError("registry_users", HIDDEN, f"the password of {user!r} {problem}")

    if not isinstance(password, str) or not password:
        raise fail("is empty")
    if len(password) < min_length:
        raise fail(f"is shorter than {min_length} characters")
    if "\n" in password or "\r" in password:
        raise fail("contains a line break")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise fail(f"is longer than {MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest)")


def validate_cost(cost: int) -> None:
    """Raise :class:`ParameterError` unless ``cost`` is a bcrypt cost from 4 to 16."""
    if isinstance(cost, bool) or not isinstance(cost, int) or not MIN_COST <= cost <= MAX_COST:
        raise ParameterError(
            "registry_bcrypt_cost", cost, f"must be {MIN_COST} to {MAX_COST}", str(DEFAULT_COST)
        )


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    """A bcrypt hash with the ``$2y$`` prefix that ``htpasswd -B`` writes."""
    validate_cost(cost)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    # $2b$ and $2y$ are the same algorithm; $2y$ matches files made with Apache's tool.
    return "$2y$" + hashed[4:]


def verify(password: str, hashed: str) -> bool:
    """Whether ``password`` matches the bcrypt hash; ``False`` for any other kind of hash."""
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def parse(text: str) -> dict[str, str]:
    """Parse an htpasswd file into ``{user: hash}`` in file order.

    Blank lines and ``#`` comments are skipped; a user listed twice keeps the last hash, as
    the registry does.
    """
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise HtpasswdError(f"htpasswd line {number}: expected 'user:hash'")
        entries.pop(user, None)
        entries[user] = hashed
    return entries


def salvage(raw: bytes) -> tuple[dict[str, str], list[str]]:
    """Parse a file that may be damaged: the good entries, and what is wrong with each bad
    line (by number; a line's content is never shown). The registry refuses to start on a
    line without ``user:hash``, so the runbook rewrites the file without them."""
    good: list[str] = []
    problems = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"line {number} is not UTF-8 text")
            continue
        stripped = text.strip()
        user, sep, hashed = stripped.partition(":")
        if stripped and not stripped.startswith("#") and not (sep and user and hashed):
            problems.append(f"line {number} is not 'user:hash'")
            continue
        good.append(text)
    return parse("\n".join(good)), problems


def render(entries: Mapping[str, str]) -> str:
    """The file text for ``{user: hash}``, in the given order, ending with a newline."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())


def plan_users(
    current: Mapping[str, str],
    wanted: Mapping[str, str],
    remove: Iterable[str] = (),
    cost: int = DEFAULT_COST,
) -> tuple[dict[str, str], list[str]]:
    """Merge the wanted users into the current file.

    ``current`` is ``{user: hash}`` (from :func:`parse`), ``wanted`` is ``{user: password}``.
    Returns the new ``{user: hash}`` and what changed, e.g. ``["added alice"]``; an empty
    list means the file stays as it is. Users neither wanted nor removed are left untouched.
    """
    remove = list(remove)
    validate_cost(cost)
    for user in [*wanted, *remove]:
        validate_username(user)
    for user, password in wanted.items():
        validate_password(user, password)
        if user in remove:
            raise ParameterError("registry_users", user, "is both wanted and to be removed")

    entries = {u: h for u, h in current.items() if u not in remove}
    changes = [f"removed {u}" for u in current if u in remove]
    for user, password in wanted.items():
        if user not in entries:
            changes.append(f"added {user}")
        elif not verify(password, entries[user]):
            changes.append(f"changed password of {user}")
        else:
            continue
        entries[user] = hash_password(password, cost)
    return entries, changes
