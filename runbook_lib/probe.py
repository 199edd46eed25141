"""Ask the registry a question over HTTPS, from the host itself, through the SSH connection.

The request leaves the host's own loopback, so no port needs to be open to the machine
running the runbook, and no HTTP client needs to be installed on the host. TLS is verified
against the registry's CA and name, exactly as a Docker client would; ``verify=False`` is
for a service whose certificate it made itself (Portainer), where there is nothing to
verify against.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ConnectError
from .hosts import SSHHost


class _RefusedChannel(logging.Filter):
    """paramiko logs a refused forward as an error; while a service starts that is expected,
    and https_get reports it itself, so it stays out of the notebook's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in record.getMessage()


logging.getLogger("paramiko.transport").addFilter(_RefusedChannel())


# A header's name (RFC 9110, section 5.1: a token); its value must be one printable line.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case

    def json(self):
        return json.loads(self.body or b"null")


def https_get(
    host: SSHHost,
    port: int,
    server_name: str,
    ca_pem: bytes,
    path: str = "/v2/",
    auth: tuple[str, str] | None = None,
    timeout: float = 5.0,
    *,
    method: str = "GET",
    body: bytes | None = None,
    verify: bool = True,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Request ``https://server_name:port/path`` at the host's 127.0.0.1; raise OSError when
    nothing answers (or ``ssl.SSLError`` when TLS does not verify). ``body`` is sent as
    JSON; ``verify=False`` accepts any certificate; ``headers`` are added as they are (an
    API token: never shown, like the body)."""
    client = host.connect()
    transport = client.get_transport()
    if transport is None:
        host.discard(client)
        raise ConnectError(f"{host.name}: the SSH connection is closed")
    try:
        chan = transport.open_channel(
            "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=timeout
        )
    except Exception as exc:  # paramiko.ChannelException: connection refused there
        raise OSError(f"nothing listens on the host's port {port} ({exc})") from None
    chan.settimeout(timeout)
    if verify:
        ctx = ssl.create_default_context(cadata=ca_pem.decode())
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        _pump(tls.do_handshake, tls, chan, incoming, outgoing)
        head = f"{method} {path} HTTP/1.0\r\nHost: {server_name}:{port}\r\n"
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            head += f"Authorization: Basic {token}\r\n"
        for name, value in (headers or {}).items():
            if not (_TOKEN.fullmatch(name) and value.isprintable()):
                raise ValueError(f"not an HTTP header: {name!r}")
            head += f"{name}: {value}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode() + (body or b"")
        _pump(lambda: tls.write(request), tls, chan, incoming, outgoing)
        data = bytearray()
        while True:
            try:
                chunk = _pump(lambda: tls.read(65536), tls, chan, incoming, outgoing)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise OSError(f"the service on port {port} did not answer within {timeout} s") from None
    finally:
        chan.close()
    if not data and not transport.is_active():
        host.discard(client)
        raise ConnectError(
            f"{host.name}: the SSH connection was lost while asking the service on port {port}. "
            "Check the host and the network, then run the notebook again."
        )
    status_line, _, rest = bytes(data).partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {status_line[:80]!r}")
    header_block, _, content = rest.partition(b"\r\n\r\n")
    fields = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return Answer(int(parts[1]), content, fields)


def _pump(op, tls, chan, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
    """Run an SSL operation, moving bytes between the memory BIOs and the channel."""
    while True:
        try:
            result = op()
        except ssl.SSLWantReadError:
            if outgoing.pending:
                chan.sendall(outgoing.read())
            chunk = chan.recv(65536)
            if not chunk:
                incoming.write_eof()
            else:
                incoming.write(chunk)
            continue
        if outgoing.pending:
            chan.sendall(outgoing.read())
        return result


def until_answers(
    ask: Callable[[], Answer],
    accept: tuple[int, ...],
    timeout: float,
    act,  # progress.Activity: the wait shown while it lasts
    give_up: Callable[[str], Exception],
) -> Answer:
    """Ask (a request through :func:`https_get`) every half second until the answer's status
    is one of ``accept``; after ``timeout`` seconds raise ``give_up(last seen)``."""
    start, last = time.monotonic(), "nothing yet"
    while True:
        try:
            answer = ask()
            if answer.status in accept:
                return answer
            last = f"{answer.status}"
        except OSError as exc:
            last = str(exc)
        waited = time.monotonic() - start
        if waited > timeout:
            raise give_up(last)
        act.update(last, n=max(0.0, min(waited, timeout) - act.count))
        time.sleep(0.5)
