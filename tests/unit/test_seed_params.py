"""seed_images and verify_archive as parameters: each entry checked before anything
changes, every refusal naming the entry and the field."""

from __future__ import annotations

import socket

import pytest

from runbook_lib import params, seed
from runbook_lib.errors import ParameterError

BASE = {"host": "10.0.0.1", "registry_host": "10.0.0.1", "registry_users": {"admin": "env:X"}}


def refusal(**values) -> ParameterError:
    with pytest.raises(ParameterError) as e:
        params.load({**BASE, **values})
    return e.value


def test_entries_a_bare_path_and_names(tmp_path):
    archive = tmp_path / "app.tar"
    archive.write_bytes(b"")
    p = params.load(
        {**BASE, "seed_images": [str(tmp_path), {"archive": str(archive), "name": "tools/app:1"}]}
    )
    assert [(s.archive, s.name) for s in p.seed_images] == [
        (str(tmp_path), None),
        (str(archive), "tools/app:1"),
    ]
    assert params.load(BASE).seed_images == [] and params.load(BASE).verify_archive is None


@pytest.mark.parametrize(
    ("entry", "where", "said"),
    [
        ({"archive": "/no/such/archive.tar"}, "seed_images[0].archive", "no such file"),
        ({"archive": "TMP", "name": "x:1"}, "seed_images[0].name", "is a folder"),
        ({"archive": "FILE", "name": "localhost:5000/app:1"}, "seed_images[0].name", "host"),
        ({"archive": "FILE", "name": "App:1"}, "seed_images[0].name", "lower case"),
        ({"archive": "FILE", "name": "app@sha256:" + "0" * 64}, "seed_images[0].name", "digest"),
        ({"archive": "FILE", "tag": "1"}, "seed_images[0].tag", "unknown parameter"),
    ],
)
def test_a_bad_entry_is_refused_naming_it(tmp_path, entry, where, said):
    file = tmp_path / "a.tar"
    file.write_bytes(b"")
    entry = {k: {"TMP": str(tmp_path), "FILE": str(file)}.get(v, v) for k, v in entry.items()}
    e = refusal(seed_images=[entry])
    assert e.name == where and said in str(e), str(e)


def test_verify_archive_must_exist():
    e = refusal(verify_archive="/no/such/hello.tar")
    assert e.name == "verify_archive" and "no such file" in e.problem


def test_the_runner_does_not_reach_a_closed_port_and_goes_through_ssh():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    reg = seed.Registry(lambda: None, "127.0.0.1", port, _pem(), ("u", "p"), "direct")
    assert seed._answers(reg) is False


def _pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    from runbook_lib import tls

    key = ec.generate_private_key(ec.SECP256R1())
    return tls.cert_to_pem(tls.make_ca(key, "test", 1))
