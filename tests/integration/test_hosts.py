"""The Host interface against the lab's real sshd: root, sudo with and without password."""

from __future__ import annotations

import threading
import time

import pytest

from runbook_lib.errors import CommandFailed, ConnectError, HostKeyError, ParameterError
from runbook_lib.secrets import Secret
from tests.conftest import CLIENT, lab_host

pytestmark = pytest.mark.lab


@pytest.fixture(params=["root_host", "sudo_host", "nopass_host"])
def host(request):
    return request.getfixturevalue(request.param)


def test_privileged_commands_run_as_root(host):
    assert host.run(["id", "-u"]).stdout.strip() == "0"


def test_unprivileged_commands_run_as_the_login_user(host):
    assert host.run(["id", "-un"], privileged=False).stdout.strip() == host.user


def test_arguments_are_quoted_not_interpreted(host):
    nasty = "a b; touch /tmp/runbook-injected $(id) `id` 'q' \"d\""
    assert host.run(["echo", nasty]).stdout == nasty + "\n"
    assert host.sh('printf "%s" "$1"', nasty).stdout == nasty
    assert not host.exists("/tmp/runbook-injected")


def test_stdin_reaches_the_command_after_the_sudo_password(host):
    assert host.run(["cat"], stdin="payload\nline 2\n").stdout == "payload\nline 2\n"


def test_failure_raises_with_command_exit_code_and_stderr(host):
    with pytest.raises(CommandFailed) as info:
        host.sh("echo to-stderr >&2; exit 7")
    err = info.value
    assert err.result.exited == 7
    assert "to-stderr" in str(err) and "exit code 7" in str(err)
    assert "sudo" not in err.result.command  # the command as written, not its wrapping


def test_check_false_returns_the_failed_result(host):
    r = host.run(["false"], check=False)
    assert not r.ok and r.exited == 1


def test_put_is_atomic_with_mode_and_owner(host):
    path = f"/tmp/runbook-put-{host.user}"
    host.run(["rm", "-f", path])
    host.put(path, "secret-ish\n", mode=0o600, owner="root:root")
    assert host.get(path) == b"secret-ish\n"
    assert host.run(["stat", "-c", "%a %U", path]).stdout.split() == ["600", "root"]
    host.put(path, b"\x00binary\xff", mode=0o640)
    assert host.get(path) == b"\x00binary\xff"
    assert host.run(["stat", "-c", "%a", path]).stdout.strip() == "640"
    # No temporary files left beside it.
    assert host.sh('ls -a /tmp | grep -c "^runbook-put-.*\\.tmp\\." || true').stdout.strip() == "0"
    host.run(["rm", "-f", path])


def test_put_never_leaves_a_half_written_file(root_host):
    path = "/tmp/runbook-put-atomic"
    root_host.put(path, "old\n")
    with pytest.raises(CommandFailed):
        root_host.put(path, "new\n", owner="no-such-user")
    assert root_host.get(path) == b"old\n"
    assert root_host.sh('ls /tmp | grep -c "^runbook-put-atomic.tmp" || true').stdout.strip() == "0"


def test_get_and_exists_of_a_missing_file(host):
    assert host.get("/nonexistent/file") is None
    assert not host.exists("/nonexistent/file")


def test_one_connection_is_reused(root_host):
    root_host.run(["true"])
    client = root_host._client
    for _ in range(5):
        root_host.run(["true"])
    assert root_host._client is client


def test_unknown_host_key_is_refused_with_fingerprint(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    h = lab_host(known_hosts=str(empty))
    with pytest.raises(HostKeyError) as info:
        h.run(["true"])
    msg = str(info.value)
    assert "SHA256:" in msg and "trust_unknown_host_key" in msg
    assert empty.read_text() == ""


def test_trusting_an_unknown_key_records_it(lab, tmp_path):
    kh = tmp_path / "known_hosts"
    h = lab_host(known_hosts=str(kh), trust_unknown_host_key=True)
    assert h.run(["true"]).ok
    assert kh.read_text().startswith("[127.0.0.1]:2222 ssh-ed25519 ")
    h.close()
    assert lab_host(known_hosts=str(kh)).run(["true"]).ok


def test_changed_host_key_is_refused_even_when_trusting(lab, tmp_path):
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(str(CLIENT / "id_ed25519"))
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:2222 ssh-ed25519 {other.get_base64()}\n")
    h = lab_host(known_hosts=str(kh), trust_unknown_host_key=True)
    with pytest.raises(HostKeyError, match="HAS CHANGED"):
        h.run(["true"])


def test_failed_authentication_names_the_parameters(lab):
    h = lab_host("nobody-here")
    with pytest.raises(ConnectError, match="authentication failed.*ssh_user"):
        h.run(["true"])


def test_unreachable_port_names_host_and_port(lab):
    h = lab_host(timeout=2)
    h.port = 1
    with pytest.raises(ConnectError, match="127.0.0.1 port 1"):
        h.run(["true"])


def test_wrong_sudo_password_is_refused_before_anything_runs(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_WRONG", "not-the-password")
    h = lab_host(
        "deploy", sudo_password=Secret("env:RUNBOOK_TEST_WRONG", parameter="sudo_password")
    )
    with pytest.raises(ParameterError, match="sudo_password") as info:
        h.run(["touch", "/tmp/runbook-should-not-exist"])
    assert "not-the-password" not in str(info.value)
    assert not lab_host().exists("/tmp/runbook-should-not-exist")


def test_missing_sudo_password_names_the_parameter(lab):
    h = lab_host("deploy")
    with pytest.raises(ParameterError, match="sudo_password"):
        h.run(["true"])


def test_password_login(lab):
    pw = Secret(f"file:{CLIENT / 'deploy.password'}", parameter="ssh_password")
    h = lab_host("deploy", key_file=None, password=pw, sudo_password=pw)
    assert h.run(["id", "-u"]).stdout.strip() == "0"


def test_dropped_connection_is_reported_and_the_next_call_reconnects(root_host):
    root_host.run(["true"])

    def drop():
        time.sleep(0.3)
        root_host._client.get_transport().sock.close()

    threading.Thread(target=drop).start()
    with pytest.raises(ConnectError, match="connection was lost"):
        root_host.run(["sleep", "3"])
    assert root_host.run(["echo", "back"]).stdout == "back\n"


def test_timeout_returns_exit_124(root_host):
    r = root_host.run(["sleep", "5"], timeout=0.5, check=False)
    assert r.exited == 124 and "timed out" in r.stderr


def test_legacy_algorithms_are_never_offered(root_host):
    """CBC ciphers, 3DES, SHA-1/MD5 MACs and SHA-1 key exchanges stay out of the offer."""
    root_host.run(["true"])
    transport = root_host.connect().get_transport()
    offered = [
        *transport.preferred_ciphers,
        *transport.preferred_macs,
        *transport.preferred_kex,
        *transport.preferred_keys,
    ]
    assert offered and not [a for a in offered if "cbc" in a or "md5" in a or "sha1" in a]
    assert "ssh-rsa" not in offered and transport.remote_cipher not in ("3des-cbc",)
