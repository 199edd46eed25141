"""Sudo over any transport: how Host asks for it. The transport here is a stand-in sudo
that rejects every password and counts the attempts; the logic under test is Host's."""

from __future__ import annotations

import threading
import time

import pytest

from runbook_lib.errors import ParameterError
from runbook_lib.hosts import Host
from runbook_lib.secrets import Secret


class RejectingSudo(Host):
    name = "stand-in"

    def __init__(self, password):
        super().__init__("deploy", password)
        self.password_tries = 0

    def _exec(self, argv, stdin, timeout):
        if "sudo" in argv and "-n" in argv:
            return 1, b"", b"sudo: a password is required\n"
        if "sudo" in argv and "-S" in argv:
            self.password_tries += 1
            time.sleep(0.05)  # long enough for the other threads to arrive
            return 1, b"", b"Sorry, try again.\nsudo: 1 incorrect password attempt\n"
        return 0, b"", b""


def test_a_wrong_sudo_password_is_tried_once_whatever_the_threads(monkeypatch):
    monkeypatch.setenv("RB_TEST_SUDO", "wrong")
    host = RejectingSudo(Secret("env:RB_TEST_SUDO", parameter="sudo_password"))
    errors = []

    def use():
        try:
            host.run(["true"])
        except ParameterError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and all(e.name == "sudo_password" for e in errors)
    # PAM may lock an account after three failures: one wrong password, one failure.
    assert host.password_tries == 1
    with pytest.raises(ParameterError):
        host.run(["true"])
    assert host.password_tries == 1


class SlowSudo(RejectingSudo):
    def _exec(self, argv, stdin, timeout):
        if "sudo" in argv and "-S" in argv:
            self.password_tries += 1
            return 124, b"", b"(timed out)"
        return super()._exec(argv, stdin, timeout)


def test_a_sudo_that_timed_out_is_asked_again(monkeypatch):
    from runbook_lib.errors import ConnectError

    monkeypatch.setenv("RB_TEST_SUDO", "whatever")
    host = SlowSudo(Secret("env:RB_TEST_SUDO", parameter="sudo_password"))
    for _ in range(2):
        with pytest.raises(ConnectError, match="did not answer"):
            host.run(["true"])
    assert host.password_tries == 2
