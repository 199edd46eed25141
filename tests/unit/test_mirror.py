"""The pull-through cache's pure parts: its configuration, its stack file, daemon.json's
merge, and the parameters' refusals."""

from __future__ import annotations

import pytest
import yaml

from runbook_lib import mirror
from runbook_lib.errors import ParameterError
from runbook_lib.params import Params, load


def params(**changes) -> Params:
    changes.setdefault("registry_users", {"admin": "env:REGISTRY_PASSWORD"})
    changes.setdefault("mirror_enabled", True)
    changes.setdefault("mirror_upstream", "https://upstream.example.com")
    return load({"host": "192.0.2.10", "registry_host": "docker.example.com", **changes})


def test_daemon_json_is_merged_with_the_mirror_first_and_every_other_key_kept():
    current = {"log-driver": "journald", "registry-mirrors": ["http://old:5001", "https://m:5002/"]}
    merged = mirror.merge_mirrors(current, "https://m:5002")
    assert merged == {
        "log-driver": "journald",
        "registry-mirrors": ["https://m:5002", "http://old:5001"],
    }
    assert mirror.merge_mirrors(merged, "https://m:5002") == merged
    assert mirror.merge_mirrors({}, "https://m:5002") == {"registry-mirrors": ["https://m:5002"]}
    assert current["registry-mirrors"][0] == "http://old:5001"  # not changed in place


def test_the_mirror_url_has_no_path_and_brackets_an_ipv6_address():
    assert mirror.url(params()) == "https://docker.example.com:5002"
    v6 = Params(
        host="2001:db8::10",
        registry_host="2001:db8::10",
        registry_users={"admin": "env:REGISTRY_PASSWORD"},
        mirror_enabled=True,
        mirror_upstream="https://upstream.example.com",
    )
    assert mirror.url(v6) == "https://[2001:db8::10]:5002"


def test_the_configuration_proxies_the_upstream_with_tls_and_its_credentials(monkeypatch):
    monkeypatch.setenv("MIRROR_PASSWORD", "upstream-secret")
    doc = yaml.safe_load(mirror.render_config(params()))
    assert doc["proxy"] == {"remoteurl": "https://upstream.example.com"}
    assert doc["http"]["tls"] == {
        "certificate": "/run/secrets/registry.crt",
        "key": "/run/secrets/registry.key",
    }
    assert doc["storage"]["filesystem"] == {"rootdirectory": "/var/lib/registry"}
    with_login = params(mirror_username="me", mirror_password="env:MIRROR_PASSWORD")
    assert yaml.safe_load(mirror.render_config(with_login))["proxy"] == {
        "remoteurl": "https://upstream.example.com",
        "username": "me",
        "password": "upstream-secret",
    }


def test_the_stack_keeps_the_configuration_and_tls_in_secrets_named_after_their_content():
    args = {
        "image": "registry:2",
        "port": 5002,
        "placement": ("node.role == manager",),
        "config_file": "/home/docker/mirror/config.yml",
        "cert_file": "/home/docker/certs/h.crt",
        "key_file": "/home/docker/certs/h.key",
        "digests": ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"),
    }
    text = mirror.render_stack(**args)
    assert text == mirror.render_stack(**args)
    doc = yaml.safe_load(text)
    service = doc["services"]["registry"]
    assert service["command"] == ["serve", "/run/secrets/mirror-config.yml"]
    assert "environment" not in service  # the upstream's password is not in the spec
    assert [s["source"] for s in service["secrets"]] == [
        "mirror_config_aaaaaaaaaaaa",
        "mirror_cert_bbbbbbbbbbbb",
        "mirror_key_cccccccccccc",
    ]
    assert doc["secrets"]["mirror_config_aaaaaaaaaaaa"]["file"] == "/home/docker/mirror/config.yml"
    assert service["ports"] == [
        {"target": 5000, "published": 5002, "protocol": "tcp", "mode": "host"}
    ]
    assert service["volumes"] == ["cache:/var/lib/registry"]
    labelled = yaml.safe_load(mirror.render_stack(**args, label="0123456789ab"))
    assert labelled["services"]["registry"]["deploy"]["labels"] == {
        "runbook.stack-digest": "0123456789ab"
    }


def test_the_image_for_this_host_is_picked_from_an_index():
    index = {
        "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:win", "platform": {"os": "windows", "architecture": "amd64"}},
        ]
    }
    assert mirror.pick(index, "amd64") == "sha256:amd"
    assert mirror.pick(index, "s390x") is None
    manifest = {"config": {"digest": "sha256:c"}, "layers": [{"digest": "sha256:l1"}]}
    assert mirror.blobs_of(manifest) == ["sha256:c", "sha256:l1"]


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"mirror_upstream": None}, "mirror_upstream"),
        ({"mirror_upstream": "ftp://upstream.example.com"}, "mirror_upstream"),
        ({"mirror_upstream": "https://upstream.example.com/v2/library"}, "mirror_upstream"),
        ({"mirror_upstream": "https://me:pw@upstream.example.com"}, "mirror_upstream"),
        ({"mirror_username": "me"}, "mirror_password"),
        ({"mirror_password": "env:MIRROR_PASSWORD"}, "mirror_username"),
        ({"mirror_port": 5000}, "mirror_port"),
        ({"mirror_port": 2377}, "mirror_port"),
    ],
)
def test_bad_mirror_parameters_are_refused_by_name(changes, name):
    with pytest.raises(ParameterError) as err:
        params(**changes)
    assert err.value.name == name


def test_an_upstream_with_a_port_and_a_trailing_slash_is_taken():
    assert (
        params(mirror_upstream="http://10.204.0.1:5001/").mirror_upstream
        == "http://10.204.0.1:5001"
    )
    assert params(mirror_enabled=False, mirror_upstream=None).mirror_enabled is False
