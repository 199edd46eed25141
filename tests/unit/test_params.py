"""Parameter validation: every bad input names the parameter and a fix, never a secret."""

from __future__ import annotations

import pytest

from runbook_lib import params
from runbook_lib.errors import ParameterError, SecretError
from runbook_lib.secrets import Secret

BASE = {
    "host": "192.0.2.10",
    "registry_host": "docker.example.com",
    "registry_users": {"admin": "env:REGISTRY_PASSWORD"},
}


def load(**over):
    return params.load({**BASE, **over})


def test_defaults_and_derived_values():
    p = load()
    assert p.registry == "docker.example.com:5000"
    assert p.ssh_user == "root" and p.registry_publish_mode == "host"
    assert load(registry_host="2001:db8::1").registry == "[2001:db8::1]:5000"
    assert load(registry_names=["x.example.com", "docker.example.com"]).all_registry_names == [
        "docker.example.com",
        "x.example.com",
    ]


BAD = [
    ({"host": "bad host"}, "host"),
    ({"host": "-leading.dash"}, "host"),
    ({"host": "a..b"}, "host"),
    ({"host": ""}, "host"),
    ({"host": "999.1.1.1"}, "host"),
    ({"registry_host": "under_score.example.com"}, "registry_host"),
    ({"registry_host": "x" * 64 + ".com"}, "registry_host"),
    ({"registry_names": ["ok.example.com", "not ok"]}, "registry_names"),
    ({"ssh_port": 0}, "ssh_port"),
    ({"ssh_port": 65536}, "ssh_port"),
    ({"ssh_port": "twenty-two"}, "ssh_port"),
    ({"registry_port": -1}, "registry_port"),
    ({"registry_port": 70000}, "registry_port"),
    ({"portainer_port": 0}, "portainer_port"),
    ({"ssh_user": "Bad User"}, "ssh_user"),
    ({"ssh_user": ""}, "ssh_user"),
    ({"ssh_key_file": "/nonexistent/id_ed25519"}, "ssh_key_file"),
    ({"registry_users": {"a:b": "env:X"}}, "registry_users"),
    ({"registry_users": {"": "env:X"}}, "registry_users"),
    ({"registry_users": {"has space": "env:X"}}, "registry_users"),
    ({"registry_users": ["admin"]}, "registry_users"),
    ({"registry_remove_users": ["x:y"]}, "registry_remove_users"),
    ({"registry_bcrypt_cost": 3}, "registry_bcrypt_cost"),
    ({"registry_bcrypt_cost": 20}, "registry_bcrypt_cost"),
    ({"tls_days": 0}, "tls_days"),
    ({"tls_days": -5}, "tls_days"),
    ({"tls_key_type": "dsa"}, "tls_key_type"),
    ({"tls_key_type": "rsa", "tls_key_size": 1024}, "tls_key_size"),
    ({"tls_key_size": 4096}, "tls_key_size"),
    ({"registry_publish_mode": "mesh"}, "registry_publish_mode"),
    ({"docker_source": "snap"}, "docker_source"),
    ({"stack_name": "bad name"}, "stack_name"),
    ({"work_dir": "relative/path"}, "work_dir"),
    ({"work_dir": "/"}, "work_dir"),
    ({"swarm_advertise_addr": "not an address!"}, "swarm_advertise_addr"),
    ({"trust_unknown_host_key": "perhaps"}, "trust_unknown_host_key"),
    ({"unknown_thing": 1}, "unknown_thing"),
    ({"host": None}, "host"),
]


@pytest.mark.parametrize("over,name", BAD, ids=[n for _, n in BAD])
def test_bad_input_names_the_parameter(over, name):
    with pytest.raises(ParameterError) as info:
        load(**over)
    err = info.value
    assert err.name.split(".")[0] == name
    assert f"parameter {name!r}" in str(err) or f"parameter '{err.name}'" in str(err)


def test_missing_required_parameter():
    with pytest.raises(ParameterError, match="registry_host"):
        params.load({"host": "192.0.2.10"})


def test_users_must_exist_and_not_also_be_removed():
    with pytest.raises(ParameterError, match="registry_users.*at least one user"):
        params.load({**BASE, "registry_users": {}})
    with pytest.raises(ParameterError, match="registry_remove_users"):
        params.load({**BASE, "registry_remove_users": ["admin"]})


def test_mistyped_or_malformed_secrets_are_not_echoed():
    for bad in (
        {"sudo_passwd": "hunter2-plain"},
        {"registry_users": {"bad user": "hunter2-plain"}},
    ):
        with pytest.raises(ParameterError) as info:
            load(**bad)
        assert "hunter2-plain" not in str(info.value)


@pytest.mark.parametrize("field", ["ssh_password", "sudo_password", "portainer_admin_password"])
def test_a_secret_value_is_refused_and_not_echoed(field):
    with pytest.raises(ParameterError) as info:
        load(**{field: "hunter2-plain"})
    assert "hunter2-plain" not in str(info.value) and field in str(info.value)


def test_a_registry_password_value_is_refused_and_not_echoed():
    with pytest.raises(ParameterError) as info:
        load(registry_users={"admin": "hunter2-plain"})
    assert "hunter2-plain" not in str(info.value)
    assert "registry_users" in str(info.value)


def test_secret_references_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("RB_TEST_SECRET", "s3cret")
    f = tmp_path / "pw"
    f.write_text("from-file\nignored\n")
    f.chmod(0o600)
    p = load(sudo_password="env:RB_TEST_SECRET", registry_users={"a": f"file:{f}"})
    assert p.sudo_password.reveal() == "s3cret"
    assert p.registry_users["a"].reveal() == "from-file"
    assert "s3cret" not in repr(p) and "from-file" not in repr(p)


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    f.chmod(0o640)
    with pytest.raises(SecretError, match=r"sudo_password.*mode 640.*chmod 600"):
        Secret(f"file:{f}", parameter="sudo_password").reveal()


def test_a_key_file_others_can_read_is_refused(tmp_path):
    key = tmp_path / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)
    with pytest.raises(ParameterError, match=r"ssh_key_file.*chmod 600"):
        load(ssh_key_file=str(key))
    key.chmod(0o600)
    assert load(ssh_key_file=str(key)).ssh_key_file == str(key)


def test_unresolvable_secrets_say_where_to_look(tmp_path, monkeypatch):
    monkeypatch.delenv("RB_TEST_UNSET", raising=False)
    with pytest.raises(SecretError, match="RB_TEST_UNSET is not set"):
        Secret("env:RB_TEST_UNSET", parameter="sudo_password").reveal()
    with pytest.raises(SecretError, match="cannot read"):
        Secret(f"file:{tmp_path}/missing", parameter="sudo_password").reveal()


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("host: [unclosed\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        params.load_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- host\n")
    with pytest.raises(ParameterError, match="mapping"):
        params.load_yaml(listy)
    with pytest.raises(ParameterError, match="parameters file"):
        params.load_yaml(tmp_path / "none.yaml")


def test_parameter_files_in_the_repo_are_valid():
    from tests.conftest import ROOT

    read = []
    for path in (ROOT / "parameters").glob("*.yaml"):
        data = params.read_yaml(path)
        data.pop("ssh_key_file", None)  # the lab's key exists only where the lab is up
        params.load(data)
        read.append(path.name)
    assert {"example.yaml", "lab.yaml", "lab-local.yaml"} <= set(read), read


def test_the_example_documents_every_parameter():
    from tests.conftest import ROOT

    data = params.read_yaml(ROOT / "parameters" / "example.yaml")
    assert set(data) == set(params.Params.model_fields)


# -- the parameters file itself ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"host: x\n# caf\xe9\n", "not UTF-8"),
        ("host: x\n".encode("utf-16"), "not UTF-8"),
        (b"\x00\x01\x02binary", "not valid YAML"),
        (b"host: a\nregistry_port: 5000\nregistry_port: 5001\n", r"given twice \(line 3\)"),
        (b"host: a\nregistry_users:\n  admin: env:A\n  admin: env:B\n", "given twice"),
        (b"host: [unclosed\n", "not valid YAML"),
        (b"- a list\n", "must be a YAML mapping"),
    ],
)
def test_a_bad_parameters_file_is_refused_in_words(tmp_path, content, problem):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(ParameterError, match=problem):
        params.load_yaml(path)


def test_a_yaml_alias_bomb_gives_a_short_message(tmp_path):
    rows = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    rows += ["host: *h", "registry_host: x", "registry_users: {a: env:X}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ParameterError) as err:
        params.load_yaml(path)
    assert "host" in str(err.value) and len(str(err.value)) < 400


# -- values checked against what consumes them ------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("stack_name", "s" * 51, "at most 50"),
        ("registry_image", "-v/:/host", "image reference"),
        ("registry_image", "Registry:2", "image reference"),
        ("verify_image", "hello world", "image reference"),
        ("verify_image", "--privileged", "image reference"),
        ("portainer_image", "x" * 300, "image reference"),
        ("work_dir", "/home/docker/../..", "resolves to /"),
        ("work_dir", "/.", "resolves to /"),
        ("work_dir", "/srv/a,b", "letters, digits"),
        ("work_dir", '/srv/a"b', "letters, digits"),
        ("work_dir", "/srv/a\x00b", "letters, digits"),
        ("work_dir", "/srv/" + "d" * 256, "longer than 255 bytes"),
        ("allow_from", ["10.0.0.300"], "not an IPv4"),
        ("allow_from", ["2001:db8::/32"], "only IPv4"),
    ],
)
def test_values_their_consumer_cannot_take_are_refused(field, value, problem):
    with pytest.raises(ParameterError) as err:
        load(**{field: value})
    assert err.value.name.startswith(field) and problem in str(err.value)


def test_good_values_are_normalised():
    p = load(work_dir="/srv//registry/./data/", allow_from=["10.0.0.7", "10.1.0.0/16"])
    assert p.work_dir == "/srv/registry/data"
    assert p.allow_from == ["10.0.0.7/32", "10.1.0.0/16"]
    assert load(registry_image="registry.example.com:5000/lib/registry:2.8@sha256:" + "a" * 64)


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"portainer_enabled": True, "portainer_port": 5000}, "portainer_port"),
        ({"registry_port": 2377}, "registry_port"),
        ({"registry_port": 7946}, "registry_port"),
        (
            {"portainer_enabled": True, "portainer_edge_port": 8000, "registry_port": 8000},
            "portainer_edge_port",
        ),
        ({"portainer_enabled": True, "portainer_edge_port": 2377}, "portainer_edge_port"),
        ({"portainer_enabled": True, "portainer_port": 4789}, "portainer_port"),
        ({"portainer_enabled": True, "stack_name": "portainer"}, "stack_name"),
    ],
)
def test_parameters_that_collide_are_refused(over, named):
    with pytest.raises(ParameterError) as err:
        load(portainer_admin_password="env:RB_PORTAINER", **over)
    assert err.value.name == named


def test_what_is_not_a_private_key_is_named(tmp_path):
    pub = tmp_path / "id.pub"
    pub.write_text("ssh-ed25519 AAAAC3Nza... me@here\n")
    pub.chmod(0o600)
    with pytest.raises(ParameterError, match=r"ssh_key_file.*public key.*without \.pub"):
        load(ssh_key_file=str(pub))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    text.chmod(0o600)
    with pytest.raises(ParameterError, match=r"ssh_key_file.*not a private key"):
        load(ssh_key_file=str(text))


def test_a_known_hosts_folder_is_named(tmp_path):
    with pytest.raises(ParameterError, match=r"known_hosts.*is a folder"):
        load(known_hosts=str(tmp_path))


def test_a_ca_folder_others_can_enter_is_refused_with_tls_ca(tmp_path):
    folder = tmp_path / "ca"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert load(tls_ca_dir=str(folder)).tls_ca is False  # not used without tls_ca
    with pytest.raises(ParameterError, match=r"tls_ca_dir.*chmod 700"):
        load(tls_ca=True, tls_ca_dir=str(folder))
    folder.chmod(0o700)
    assert load(tls_ca=True, tls_ca_dir=str(folder)).tls_ca is True
    (tmp_path / "file").write_text("")
    with pytest.raises(ParameterError, match=r"tls_ca_dir.*not a folder"):
        load(tls_ca=True, tls_ca_dir=str(tmp_path / "file"))


@pytest.mark.parametrize("version", ["1;rm -rf /", "latest", "24.0.7 docker-ce", "-1"])
def test_a_docker_version_that_is_no_version_is_refused(version):
    with pytest.raises(ParameterError, match="docker_version"):
        load(docker_version=version)


@pytest.mark.parametrize("version", ["24.0.7", "5:24.0.7-1~debian.12~bookworm", "20.10.24+dfsg1"])
def test_package_versions_are_accepted(version):
    assert load(docker_version=version).docker_version == version


def test_the_renewal_threshold_is_below_the_validity():
    base = {"host": "h.example", "registry_host": "h.example", "registry_users": {"a": "env:X"}}
    assert params.load({**base, "tls_days": 90, "tls_renew_days": 20}).tls_renew_days == 20
    with pytest.raises(ParameterError) as e:
        params.load({**base, "tls_days": 30})  # the default threshold is 30 days
    assert e.value.name == "tls_renew_days" and "less than tls_days (30)" in str(e.value)
