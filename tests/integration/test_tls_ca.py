"""tls_ca: a local CA signs the registry's certificate, and its private key lives on the
machine running the runbook, never on the registry's host."""

from __future__ import annotations

import stat

import pytest
import yaml

from tests.integration.test_faults import PARAMS, assert_clean, built, run, sh  # noqa: F401

pytestmark = pytest.mark.lab
HOST_KEY = "/home/docker/certs/ca.key"


def test_the_ca_key_stays_on_the_runner(built, tmp_path):  # noqa: F811 (pytest fixture)
    ca_dir = tmp_path / "ca"
    params = tmp_path / "ca.yaml"
    values = {**yaml.safe_load(PARAMS.read_text()), "tls_ca": True, "tls_ca_dir": str(ca_dir)}
    params.write_text(yaml.safe_dump(values))

    first = run(tmp_path, params=params, only=["05", "07", "08"])
    assert_clean(first)
    key = ca_dir / "localhost-ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert sh(f"test -e {HOST_KEY} && echo there || echo absent").strip() == "absent"
    # Clients trust the CA, and the registry's certificate is one it signed.
    sh(
        "openssl verify -CAfile /etc/docker/certs.d/localhost:5000/ca.crt "
        "/home/docker/certs/localhost.crt"
    )

    # A key an earlier run left on the host is moved here, and the host keeps no copy.
    sh(f"install -m 600 {key} {HOST_KEY}")
    key.unlink()
    moved = run(tmp_path, params=params, only=["05"])
    assert_clean(moved)
    assert moved.notebooks[0].changed == 1
    assert key.exists() and sh(f"test -e {HOST_KEY} || echo absent").strip() == "absent"
    again = run(tmp_path, params=params, only=["05"])
    assert again.notebooks[0].changed == 0
