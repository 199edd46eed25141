"""The host interface: run a command, put a file, get a file; over SSH or locally.

Commands are argument lists, quoted by this module and never pasted into a shell string, so
a value such as a path or a user name cannot inject a command. Shell constructs go through
:meth:`Host.sh`, which passes values as positional parameters (``"$1"``), not as text.

Privileged commands (the default) run as root: directly when the login user is root,
otherwise through ``sudo``. The sudo password is written to sudo's standard input, never
put on a command line; it is checked once, when the connection is first used.
"""

from __future__ import annotations

import os
import select
import shlex
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko

from .errors import CommandFailed, ConnectError, HostKeyError, ParameterError, RunbookError
from .secrets import Secret

Argv = Sequence[str]
LineCallback = Callable[[str], None] | None


class LineSplitter:
    """Cut a stream of output chunks into lines for a callback, as they arrive.

    ``\\n`` and ``\\r`` end a line (apt and docker redraw their progress with ``\\r``); a
    partial line waits for the next chunk, and :meth:`close` delivers the last one. A
    callback that fails is not called again: progress must never break a command.
    """

    def __init__(self, callback: Callable[[str], None]):
        self._callback: Callable[[str], None] | None = callback
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        if not chunk or self._callback is None:
            return
        *lines, self._partial = (self._partial + chunk).replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            if line:
                self._call(line)

    def close(self) -> None:
        if self._partial:
            self._call(self._partial)
        self._partial = b""

    def _call(self, line: bytes) -> None:
        if self._callback is None:
            return
        try:
            self._callback(line.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001
            self._callback = None


@dataclass(frozen=True)
class Result:
    """What a command did: like Fabric's ``Result``, a value that can be shown and tested."""

    host: str
    command: str
    exited: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def __str__(self) -> str:
        return f"[{self.exited}] {self.command} ({self.duration:.2f} s)"


# Writes standard input to a private temporary file beside the target, sets mode and owner,
# then renames it over the target: a reader sees the old file or the new one, never half.
_PUT_SCRIPT = """set -e
tmp=$(mktemp -- "$1.tmp.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod "$2" "$tmp"
chown "$3" "$tmp"
mv -f -- "$tmp" "$1"
trap - EXIT
"""


class Host(ABC):
    """A machine commands run on. Subclasses provide :meth:`_exec`; the rest is shared."""

    #: ``user@address:port`` or similar, for messages.
    name: str

    def __init__(self, user: str, sudo_password: Secret | None = None):
        self.user = user
        self._sudo_password = sudo_password
        self._sudo_mode: str | None = None  # "root", "nopasswd" or "password", found lazily
        # Makes the error of a definite refusal: no sudo, or no or a wrong password.
        self._sudo_refusal: Callable[[], RunbookError] | None = None
        # Facts may be read from several threads (runbook_lib.facts): sudo is asked once, so
        # that a wrong password counts as one failure (PAM locks accounts after a few).
        self._sudo_lock = threading.Lock()
        self.changes = 0  # counted by steps.apply: facts read before a change are stale

    # -- what subclasses implement -------------------------------------------------------
    @abstractmethod
    def _exec(
        self, argv: Argv, stdin: bytes, timeout: float | None, *, on_line: LineCallback = None
    ) -> tuple[int, bytes, bytes]:
        """Run argv, feeding stdin, and return (exit code, stdout, stderr); when given,
        call ``on_line`` with each output line as it arrives (see :class:`LineSplitter`)."""

    def close(self) -> None:  # noqa: B027 (optional for subclasses)
        """Release the connection, if any. The next call reconnects."""

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the interface -------------------------------------------------------------------
    def run(
        self,
        argv: Argv,
        *,
        privileged: bool = True,
        stdin: bytes | str | None = None,
        check: bool = True,
        timeout: float | None = 600,
        display: str | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> Result:
        """Run a command given as an argument list and return its :class:`Result`.

        ``check=False`` returns a failed result instead of raising :class:`CommandFailed`,
        for probes. ``display`` replaces the command in results and errors when the
        arguments themselves should not be shown. ``on_line`` is called with each line of
        standard output and standard error while the command runs (``\\r`` ends a line
        too), e.g. ``progress.Activity.line``; the result holds the whole output as usual.
        """
        argv = [str(a) for a in argv]
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        shown = display or shlex.join(argv)
        full, data = self._wrap(argv, data, privileged)
        start = time.monotonic()
        if on_line is None:
            code, out, err = self._exec(full, data, timeout)
        else:
            code, out, err = self._exec(full, data, timeout, on_line=on_line)
        result = Result(
            host=self.name,
            command=shown,
            exited=code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=time.monotonic() - start,
        )
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def sh(self, script: str, *args: str, **kwargs) -> Result:
        """Run a POSIX shell script; ``args`` arrive as ``"$1"``, ``"$2"``... unquoted-safe."""
        kwargs.setdefault("display", f"sh -c {shlex.quote(script.strip())} " + shlex.join(args))
        return self.run(["sh", "-c", script, "sh", *args], **kwargs)

    def put(
        self, path: str, data: bytes | str, *, mode: int = 0o644, owner: str = "root:root"
    ) -> Result:
        """Write ``data`` to ``path`` atomically (temporary file, then rename).

        The parent directory must exist. The content travels on standard input, so it is
        never visible in a process list.
        """
        return self.sh(
            _PUT_SCRIPT,
            path,
            format(mode, "o"),
            owner,
            stdin=data,
            display=f"put {path} (mode {mode:o}, owner {owner})",
        )

    def get(self, path: str) -> bytes | None:
        """The content of ``path``, or ``None`` when it does not exist."""
        argv, data = self._wrap(
            ["sh", "-c", 'test -e "$1" || exit 3; cat -- "$1"', "sh", path], b"", True
        )
        code, out, err = self._exec(argv, data, 120)
        if code == 3:
            return None
        if code != 0:
            raise CommandFailed(Result(self.name, f"cat -- {path}", code, "", err.decode(), 0.0))
        return out

    def stream(
        self,
        argv: Argv,
        *,
        source: BinaryIO | None = None,
        sink: BinaryIO | None = None,
        timeout: float | None = 3600,
        display: str | None = None,
    ) -> Result:
        """Run a privileged command with a file on its standard input (``source``) and/or
        its standard output going to a file (``sink``), a chunk at a time: for archives
        larger than memory. The result's ``stdout`` is empty when ``sink`` is given."""
        argv = [str(a) for a in argv]
        full, data = self._wrap(argv, b"", True)
        start = time.monotonic()
        code, out, err = self._exec_stream(full, data, source, sink, timeout)
        result = Result(
            self.name,
            display or shlex.join(argv),
            code,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
            time.monotonic() - start,
        )
        if not result.ok:
            raise CommandFailed(result)
        return result

    def _exec_stream(
        self,
        argv: Argv,
        prefix: bytes,
        source: BinaryIO | None,
        sink: BinaryIO | None,
        timeout: float | None,
    ) -> tuple[int, bytes, bytes]:
        """Run argv with ``prefix`` (sudo's password), then ``source``, on its standard
        input; its standard output to ``sink`` (or returned); (exit code, stdout, stderr)."""
        raise NotImplementedError(f"{type(self).__name__} cannot stream files")

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).ok

    # -- privilege -----------------------------------------------------------------------
    @property
    def is_root(self) -> bool:
        return self.user == "root"

    def _wrap(self, argv: list[str], data: bytes, privileged: bool) -> tuple[list[str], bytes]:
        if not privileged or self.is_root:
            return argv, data
        mode = self._find_sudo_mode()
        if mode == "nopasswd":
            return ["sudo", "-n", "--", *argv], data
        # -k: ignore cached credentials, so sudo always reads the password line we send and
        # it can never fall through to the command's own standard input.
        password = self._sudo_password.reveal().encode()  # type: ignore[union-attr]
        return ["sudo", "-k", "-S", "-p", "", "--", *argv], password + b"\n" + data

    def _find_sudo_mode(self) -> str:
        with self._sudo_lock:
            if self._sudo_refusal is not None:
                # A fresh error each time: one object raised in several threads would
                # collect all their tracebacks.
                raise self._sudo_refusal()
            return self._probe_sudo()

    def _refuse(self, make: Callable[[], RunbookError]) -> RunbookError:
        """Remember a definite answer (no sudo, no or a wrong password): asking again would
        only count another failure against the account."""
        self._sudo_refusal = make
        return make()

    def _probe_sudo(self) -> str:
        if self._sudo_mode:
            return self._sudo_mode
        # LC_ALL=C: the messages below are matched, and sudo translates them.
        code, _, err = self._exec(["env", "LC_ALL=C", "sudo", "-k", "-n", "true"], b"", 30)
        if code == 0:
            self._sudo_mode = "nopasswd"
            return self._sudo_mode
        if b"password is required" not in err:
            raise self._refuse(lambda: self._no_sudo(code, err))
        if self._sudo_password is None:
            raise self._refuse(
                lambda: ParameterError(
                    "sudo_password",
                    None,
                    f"user {self.user!r} needs a password for sudo on {self.name}",
                    "sudo_password: env:SUDO_PASSWORD",
                )
            )
        pw = self._sudo_password.reveal().encode()
        code, _, err = self._exec(
            ["env", "LC_ALL=C", "sudo", "-k", "-S", "-p", "", "--", "true"], pw + b"\n", 30
        )
        if code == 0:
            self._sudo_mode = "password"
            return self._sudo_mode
        if b"incorrect password" in err or b"try again" in err:
            raise self._refuse(
                lambda: ParameterError(
                    "sudo_password",
                    self._sudo_password,
                    f"sudo rejected the password for user {self.user!r} on {self.name}",
                    "the password of that user on the host, e.g. env:SUDO_PASSWORD",
                )
            )
        if code == 124:
            raise self._no_sudo(code, err)
        raise self._refuse(lambda: self._no_sudo(code, err))

    def _no_sudo(self, code: int, err: bytes) -> ConnectError:
        if code == 124:
            return ConnectError(f"{self.name}: sudo did not answer within 30 s; try again")
        return ConnectError(
            f"{self.name}: user {self.user!r} cannot use sudo ({err.decode().strip()}). "
            "Connect as root (parameter 'ssh_user') or give this user sudo rights."
        )


class LocalHost(Host):
    """This machine, through subprocess: for tests and for trusting the CA on the runner."""

    def __init__(self, sudo_password: Secret | None = None):
        import getpass

        super().__init__(getpass.getuser() if os.geteuid() else "root", sudo_password)
        self.name = f"local ({self.user})"

    def _exec(
        self, argv: Argv, stdin: bytes, timeout: float | None, *, on_line: LineCallback = None
    ) -> tuple[int, bytes, bytes]:
        if on_line is not None:
            return _stream_local(argv, stdin, timeout, on_line)
        try:
            proc = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return 124, exc.stdout or b"", (exc.stderr or b"") + b"\n(timed out)"
        except FileNotFoundError as exc:
            return 127, b"", str(exc).encode()
        return proc.returncode, proc.stdout, proc.stderr

    def _exec_stream(self, argv, prefix, source, sink, timeout):  # noqa: ANN001, ANN202
        import tempfile

        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=sink or subprocess.PIPE, stderr=err
            )
            out = b""
            try:
                proc.stdin.write(prefix)  # type: ignore[union-attr]
                while source is not None and (chunk := source.read(1 << 20)):
                    proc.stdin.write(chunk)  # type: ignore[union-attr]
                proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
            try:
                if sink is None:
                    out = proc.stdout.read()  # type: ignore[union-attr]
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = 124
            err.seek(0)
            return code, out, err.read()


# Never offered: CBC and 3DES ciphers, SHA-1 and MD5 MACs, SHA-1 key exchanges, SHA-1 RSA
# and DSA signatures (paramiko's `disabled_algorithms`; the names a given version no longer
# knows are simply absent from its lists). Every OpenSSH since 7.4 (2016) offers better.
LEGACY_ALGORITHMS = {
    "ciphers": ["aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc", "blowfish-cbc"],
    "macs": ["hmac-sha1", "hmac-md5", "hmac-sha1-96", "hmac-md5-96"],
    "kex": [
        "diffie-hellman-group1-sha1",
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group-exchange-sha1",
    ],
    "keys": ["ssh-rsa", "ssh-dss"],
    "pubkeys": ["ssh-rsa", "ssh-dss"],
}
# A tunnel's channel window (what the host may have in flight to us) and read size.
_TUNNEL_WINDOW = 16 << 20
_TUNNEL_READ = 1 << 18


class SSHHost(Host):
    """A host reached over SSH with paramiko: connects on first use, one connection reused.

    Host keys are checked against ``known_hosts``; an unknown key is refused unless
    ``trust_unknown_host_key`` is set (then it is added to that file); a changed key is
    always refused.
    """

    def __init__(
        self,
        address: str,
        *,
        port: int = 22,
        user: str = "root",
        key_file: str | None = None,
        password: Secret | None = None,
        sudo_password: Secret | None = None,
        known_hosts: str = "~/.ssh/known_hosts",
        trust_unknown_host_key: bool = False,
        timeout: float = 10.0,
    ):
        super().__init__(user, sudo_password)
        self.address = address
        self.port = port
        self.key_file = key_file
        self._password = password
        self.known_hosts = os.path.expanduser(known_hosts)
        self.trust_unknown_host_key = trust_unknown_host_key
        self.timeout = timeout
        self.name = f"{user}@{address}:{port}"
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._failed: tuple[float, ConnectError] | None = None  # the last failed attempt

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        """Open the connection now (it opens by itself on first use)."""
        # Facts may be read in the background (runbook_lib.facts): one connection for all,
        # and one attempt for all when it fails (a wrong password tried by every thread
        # would count against the account; an unreachable host would be waited for again).
        with self._lock:
            failed = self._failed
            if failed and time.monotonic() - failed[0] < 1.0:
                raise type(failed[1])(str(failed[1]))  # fresh: threads would share a traceback
            try:
                return self._connect()
            except ConnectError as exc:
                self._failed = (time.monotonic(), exc)
                raise

    def _connect(self) -> paramiko.SSHClient:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self._client.close()
            self._client = None
        client = paramiko.SSHClient()
        if os.path.exists(self.known_hosts):
            client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(_TrustPolicy(self))
        try:
            client.connect(
                self.address,
                port=self.port,
                sock=self._socket(),
                username=self.user,
                key_filename=self.key_file,
                password=self._password.reveal() if self._password else None,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=self.key_file is None and self._password is None,
                look_for_keys=self.key_file is None and self._password is None,
                disabled_algorithms=LEGACY_ALGORITHMS,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{self.name}: THE HOST KEY HAS CHANGED. known_hosts ({self.known_hosts}) "
                f"has {_fingerprint(exc.expected_key)} but the host offered "
                f"{_fingerprint(exc.key)}. This can be a reinstalled host or a machine in "
                "the middle. Check the new key out of band, then remove the old line with "
                f"`ssh-keygen -R {_known_hosts_name(self.address, self.port)} -f {self.known_hosts}`."
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            how = "the key in 'ssh_key_file'" if self.key_file else "'ssh_password' or an agent key"
            raise ConnectError(
                f"{self.name}: authentication failed ({exc}). Check 'ssh_user' and {how}."
            ) from None
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            raise ConnectError(
                f"cannot connect to {self.address} port {self.port} as {self.user}: {exc}. "
                "Check 'host' and 'ssh_port', that sshd runs there and that no firewall "
                "blocks the port."
            ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        self._client = client
        return client

    def _socket(self) -> socket.socket:
        sock = socket.create_connection((self.address, self.port), timeout=self.timeout)
        # Without it each small request waits for the peer's delayed ACK: ~40 ms a command.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def discard(self, client: paramiko.SSHClient) -> None:
        """Close a connection that failed, unless another thread has replaced it since."""
        with self._lock:
            if self._client is client:
                client.close()
                self._client = None

    def tunnel(self, port: int, timeout: float = 10.0) -> socket.socket:
        """A local socket connected to the host's ``127.0.0.1:port`` through this SSH
        connection (a ``direct-tcpip`` channel, as ``ssh -L`` opens), for a client that
        wants a socket (TLS, ``http.client``). Two threads copy bytes each way until either
        side closes; closing the returned socket closes the channel."""
        client = self.connect()
        transport = client.get_transport()
        if transport is None:
            self.discard(client)
            raise ConnectError(f"{self.name}: the SSH connection is closed")
        try:
            # A large window: bulk uploads otherwise stall on the peer's window updates.
            chan = transport.open_channel(
                "direct-tcpip",
                ("127.0.0.1", port),
                ("127.0.0.1", 0),
                timeout=timeout,
                window_size=_TUNNEL_WINDOW,
            )
        except Exception as exc:  # paramiko.ChannelException: connection refused there
            raise OSError(f"nothing listens on the host's port {port} ({exc})") from None
        mine, theirs = socket.socketpair()

        def to_host() -> None:
            try:
                while data := theirs.recv(_TUNNEL_READ):
                    chan.sendall(data)
            except OSError:
                pass
            finally:
                chan.shutdown_write()

        def from_host() -> None:
            try:
                while data := chan.recv(_TUNNEL_READ):
                    theirs.sendall(data)
            except OSError:
                pass
            finally:
                chan.close()
                try:
                    theirs.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        threads = [
            threading.Thread(target=f, name=f"tunnel-{port}-{f.__name__}", daemon=True)
            for f in (to_host, from_host)
        ]
        for t in threads:
            t.start()

        def closer() -> None:
            for t in threads:
                t.join()
            theirs.close()

        threading.Thread(target=closer, name=f"tunnel-{port}-close", daemon=True).start()
        return mine

    def _exec(
        self, argv: Argv, stdin: bytes, timeout: float | None, *, on_line: LineCallback = None
    ) -> tuple[int, bytes, bytes]:
        client = self.connect()
        command = shlex.join(argv)
        try:
            transport = client.get_transport()
            if transport is None:
                raise EOFError("the connection is closed")
            chan = transport.open_session()
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            return _collect(chan, timeout, on_line)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.discard(client)
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> ConnectError:
        return ConnectError(
            f"{self.name}: the SSH connection was lost ({exc or type(exc).__name__}). "
            "Check the host and the network, then run the notebook again: every step "
            "checks before it acts."
        )

    def _exec_stream(self, argv, prefix, source, sink, timeout):  # noqa: ANN001, ANN202
        client = self.connect()
        try:
            transport = client.get_transport()
            if transport is None:
                raise EOFError("the connection is closed")
            chan = transport.open_session()
            chan.exec_command(shlex.join(argv))
            if prefix:
                chan.sendall(prefix)
            # Only one of the two streams is large at a time (an upload to tar -x, or a
            # download from tar -c): what the command says meanwhile waits in paramiko's
            # buffers.
            while source is not None and (chunk := source.read(1 << 20)):
                chan.sendall(chunk)
            chan.shutdown_write()
            return _collect(chan, timeout, sink=sink.write if sink is not None else None)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.discard(client)
            raise self._lost(exc) from None


def _collect(
    chan: paramiko.Channel,
    timeout: float | None,
    on_line: LineCallback = None,
    sink: Callable[[bytes], object] | None = None,
) -> tuple[int, bytes, bytes]:
    out, err = bytearray(), bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    exited_at = None
    # One splitter per stream, so that a line is never glued to the other stream's.
    lines = (LineSplitter(on_line), LineSplitter(on_line)) if on_line else None
    while True:
        while chan.recv_ready():
            chunk = chan.recv(65536)
            if sink is not None:
                sink(chunk)
                continue
            out += chunk
            if lines:
                lines[0].feed(chunk)
        while chan.recv_stderr_ready():
            chunk = chan.recv_stderr(65536)
            err += chunk
            if lines:
                lines[1].feed(chunk)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            # sshd may send the exit status before the last of the output: the end of the
            # output is its EOF. A daemon the command started may keep the output open,
            # so that EOF is waited for 2 s at most.
            exited_at = exited_at or time.monotonic()
            if chan.eof_received or time.monotonic() - exited_at > 2:
                break
        if chan.closed and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if deadline is not None and time.monotonic() > deadline:
            chan.close()
            return 124, bytes(out), bytes(err) + f"\n(timed out after {timeout} s)".encode()
        # The channel's pipe wakes us when stdout data arrives or the channel closes;
        # the short timeout covers stderr-only output.
        select.select([chan], [], [], 0.05)
    if lines:
        lines[0].close()
        lines[1].close()
    code = chan.recv_exit_status()
    if code == -1:
        raise EOFError("the connection closed before the command finished")
    return code, bytes(out), bytes(err)


def _stream_local(
    argv: Argv, stdin: bytes, timeout: float | None, on_line: Callable[[str], None]
) -> tuple[int, bytes, bytes]:
    """subprocess, with both outputs read by threads and passed on line by line."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        return 127, b"", str(exc).encode()
    chunks: tuple[bytearray, bytearray] = (bytearray(), bytearray())

    def read(stream, into: bytearray) -> None:  # noqa: ANN001
        lines = LineSplitter(on_line)
        while chunk := stream.read1(65536):
            into += chunk
            lines.feed(chunk)
        lines.close()

    readers = [
        threading.Thread(target=read, args=(s, b), daemon=True)
        for s, b in zip((proc.stdout, proc.stderr), chunks, strict=True)
    ]
    for t in readers:
        t.start()
    try:
        if stdin:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    except BrokenPipeError:
        pass
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for t in readers:
            t.join(2)
        return 124, bytes(chunks[0]), bytes(chunks[1]) + b"\n(timed out)"
    for t in readers:
        t.join()
    return code, bytes(chunks[0]), bytes(chunks[1])


def _known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _TrustPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys with their fingerprint, or add them when the user said so."""

    def __init__(self, host: SSHHost):
        self.host = host

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 (paramiko's signature)
        h = self.host
        if not h.trust_unknown_host_key:
            raise HostKeyError(
                f"{h.name}: unknown host key {_fingerprint(key)}; it is not in "
                f"{h.known_hosts}. Check that fingerprint on the host "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then set "
                "'trust_unknown_host_key: true' once to record it, or add the key to "
                "'known_hosts' yourself."
            )
        path = Path(h.known_hosts)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def port_open(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to address:port succeeds (a probe, from the runner)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
