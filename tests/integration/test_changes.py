"""Changes an operator makes after the first run, on a built lab host: a user's password
changed, a user removed, a certificate close to its expiry, files whose modes were loosened.
Each is checked where it matters: a real login to the registry, the certificate the registry
serves, the modes on the host, and an image pushed before that is still served."""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import socket
import ssl
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from runbook_lib import runner, tls
from tests.conftest import papermill_alone
from tests.integration.test_faults import (  # noqa: F401 (built: a fixture)
    PARAMS,
    assert_clean,
    built,
    keep_image,
    run,
    served,
    sh,
)

pytestmark = pytest.mark.lab
WORK = "/home/docker"
CA = "/etc/docker/certs.d/localhost:5000/ca.crt"


def login(user: str, password: str) -> int:
    """The registry's answer to a login as a Docker client makes it: GET /v2/ with Basic
    auth, TLS verified against the CA Docker trusts (in this process: never on a command
    line)."""
    context = ssl.create_default_context(cafile=CA)
    conn = http.client.HTTPSConnection("localhost", 5000, context=context, timeout=10)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request("GET", "/v2/", headers={"Authorization": f"Basic {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


def served_certificate() -> tls.CertInfo:
    context = ssl.create_default_context(cafile=CA)
    with socket.create_connection(("localhost", 5000), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            der = conn.getpeercert(binary_form=True)
    return tls.cert_info(x509.load_der_x509_certificate(der))


def with_values(tmp_path: Path, name: str, **values) -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump({**yaml.safe_load(PARAMS.read_text()), **values}))
    return f


def step(summary, notebook: str, name: str) -> dict:
    report = runner.read_report(Path(summary.folder) / f"{notebook}.ipynb")
    return next(s for s in report["steps"] if s["name"] == name)


def test_a_changed_password_and_a_removed_user_reach_the_registry(built, tmp_path):  # noqa: F811
    """Notebook 13, on demand: the password file, the registry rolled onto it, and the
    logins checked by the runbook itself; then checked again here with real logins."""
    kept = keep_image()
    base = yaml.safe_load(PARAMS.read_text())["registry_users"]
    first, second = (f"rb-{secrets.token_hex(8)}" for _ in range(2))
    os.environ["RB_TEST_EXTRA"] = first
    try:
        users = {**base, "extra": "env:RB_TEST_EXTRA"}
        added = run(built, with_values(tmp_path, "added", registry_users=users), only=["13"])
        assert_clean(added)
        assert step(added, "13-users", "Logins")["details"] == {
            "admin": "logs in (200)",
            "extra": "logs in (200)",
        }
        assert login("extra", first) == 200

        os.environ["RB_TEST_EXTRA"] = second
        changed = run(built, with_values(tmp_path, "changed", registry_users=users), only=["13"])
        assert_clean(changed)
        for name in ("Registry users", "Stack file", "Registry service"):
            assert step(changed, "13-users", name)["status"] == "changed", name
        assert login("extra", first) == 401, "the old password still logs in"
        assert login("extra", second) == 200

        gone = with_values(tmp_path, "gone", registry_remove_users=["extra"])
        removed = run(built, gone, only=["13"])
        assert_clean(removed)
        assert "extra" in step(removed, "13-users", "Registry users")["reason"]
        assert step(removed, "13-users", "Logins")["details"]["extra (removed)"] == "gone"
        assert login("extra", second) == 401, "a removed user still logs in"
        again = run(built, gone, only=["13"])
        assert [n.changed for n in again.notebooks] == [0]
        # Alone under papermill, as an operator without the runner would run it.
        report = papermill_alone("13-users", gone, tmp_path / "13.ipynb")
        assert (report["status"], report["changed"]) == ("ok", 0)
    finally:
        os.environ.pop("RB_TEST_EXTRA", None)
    assert served(kept)


def test_a_certificate_close_to_its_expiry_is_renewed_and_served(built, tmp_path):  # noqa: F811
    kept = keep_image()
    key = tls.load_key(Path(f"{WORK}/certs/localhost.key").read_bytes())
    names = yaml.safe_load(PARAMS.read_text())["registry_names"]
    short = tls.cert_to_pem(tls.make_server_cert(key, ["localhost", *names], 10))
    for path in (f"{WORK}/certs/localhost.crt", f"{WORK}/certs/ca.crt"):
        Path(path).write_bytes(short)  # as if the first run had been ~a year ago

    summary = run(built, only=["05", "07"])
    assert_clean(summary)
    certificate = step(summary, "05-tls", "Certificate")
    assert certificate["status"] == "changed"
    assert "expires in" in certificate["reason"], certificate["reason"]
    # The registry serves the new certificate, trusted through the new ca.crt.
    info = served_certificate()
    assert info.days_left > 300
    assert (
        info.sha256
        == tls.cert_info(tls.load_cert(Path(f"{WORK}/certs/localhost.crt").read_bytes())).sha256
    )
    assert served(kept)
    assert [n.changed for n in run(built, only=["05", "07"]).notebooks] == [0, 0]


@pytest.mark.parametrize(
    ("path", "loosen", "wanted"),
    [
        (f"{WORK}/auth/htpasswd", "chmod 644", "600 root:root"),
        (f"{WORK}/auth", "chmod 755", "700 root:root"),
        (f"{WORK}/certs", "chmod 755", "700 root:root"),
        (f"{WORK}/auth/htpasswd", "chgrp nogroup", "600 root:root"),
    ],
)
def test_loosened_modes_are_repaired_and_said(built, tmp_path, path, loosen, wanted):  # noqa: F811
    sh(f"{loosen} {path}")
    summary = run(built, only=["05", "06"])
    assert_clean(summary)
    assert sum(n.changed for n in summary.notebooks) >= 1, "the repair was not reported"
    assert sh(f"stat -c '%a %U:%G' {path}").strip() == wanted
    assert [n.changed for n in run(built, only=["05", "06"]).notebooks] == [0, 0]


def test_notebook_12_renews_under_the_kept_ca_and_clients_keep_pulling(built, tmp_path):  # noqa: F811
    """With tls_ca, a renewal keeps the CA: what clients trust does not change, and they
    go on pulling across it."""
    kept = keep_image()
    ca_dir = tmp_path / "ca"
    with_ca = with_values(tmp_path, "with-ca", tls_ca=True, tls_ca_dir=str(ca_dir))
    try:
        assert_clean(run(built, with_ca, only=["05", "07"]))
        trusted = Path(CA).read_bytes()
        # A certificate from the same CA and key, 10 days from its end.
        ca_cert = tls.load_cert(Path(f"{WORK}/certs/ca.crt").read_bytes())
        ca_key = tls.load_key((ca_dir / "localhost-ca.key").read_bytes())
        key = tls.load_key(Path(f"{WORK}/certs/localhost.key").read_bytes())
        names = yaml.safe_load(PARAMS.read_text())["registry_names"]
        short = tls.make_server_cert(key, ["localhost", *names], 10, ca_key, ca_cert)
        Path(f"{WORK}/certs/localhost.crt").write_bytes(tls.cert_to_pem(short))

        renewed = run(built, with_ca, only=["12"])
        assert_clean(renewed)
        expiry = step(renewed, "12-certificates", "Expiry")
        assert (
            expiry["status"] == "verified" and "fewer than tls_renew_days" in expiry["warnings"][0]
        )
        assert step(renewed, "12-certificates", "Certificate")["status"] == "changed"
        assert Path(CA).read_bytes() == trusted  # clients trust what they trusted
        assert served_certificate().days_left > 300
        assert served(kept)
        assert [n.changed for n in run(built, with_ca, only=["12"]).notebooks] == [0]
    finally:
        assert_clean(run(built, only=["05", "07"]))  # back to the self-signed certificate
    assert served(kept)
