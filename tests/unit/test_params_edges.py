"""The parameter model's refusals, word for word: each names the parameter, the bad value
(or hides it) and a good example, as the README promises."""

from __future__ import annotations

import pytest

from runbook_lib import params
from runbook_lib.errors import ParameterError

BASE = {"host": "192.0.2.10", "registry_host": "registry.example.com"}
USERS = {"registry_users": {"admin": "env:REGISTRY_PASSWORD"}}


def refusal(values: dict) -> str:
    with pytest.raises(ParameterError) as caught:
        params.load({**BASE, **USERS, **values})
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"registry_port": 2377},
            "parameter 'registry_port' = 2377: the swarm itself uses 2377/tcp (swarm "
            "management) (for example: 5000)",
        ),
        (
            {"portainer_enabled": True, "portainer_port": 4789},
            "parameter 'portainer_port' = 4789: the swarm itself uses 4789/udp (overlay) "
            "(for example: 9443)",
        ),
        (
            {"portainer_enabled": True, "portainer_port": 5000},
            "parameter 'portainer_port' = 5000: registry_port is the same port: each needs its "
            "own (for example: 9443)",
        ),
        (
            {"portainer_enabled": True, "portainer_edge_port": 8000, "registry_port": 8000},
            "parameter 'portainer_edge_port' = 8000: registry_port is the same port: each "
            "needs its own (for example: null (no Edge agents) or 8000)",
        ),
        (
            {"portainer_enabled": True, "portainer_edge_port": 9443},
            "parameter 'portainer_edge_port' = 9443: portainer_port is the same port: each "
            "needs its own (for example: null (no Edge agents) or 8000)",
        ),
        (
            {"portainer_enabled": True, "stack_name": "portainer"},
            "parameter 'stack_name' = 'portainer': Portainer's own stack has that name: the two "
            "would share their services' names (for example: manager)",
        ),
        (
            {"registry_remove_users": ["admin"]},
            "parameter 'registry_remove_users' = ['admin']: these users are also in "
            "registry_users (for example: [olduser])",
        ),
        (
            {"registry_remove_users": ["a:b"]},
            "parameter 'registry_remove_users' = ['a:b']: user name 'a:b' is not allowed: it "
            "must be non-empty, without ':' or spaces (for example: [olduser])",
        ),
        (
            {"registry_names": ["ok.example", "bad name"]},
            "parameter 'registry_names' = ['ok.example', 'bad name']: 'bad name' is not a valid "
            "host name or IP address (for example: [registry.internal, 192.0.2.10])",
        ),
        (
            {"registry_users": {"admin": 5}},
            "parameter 'registry_users.admin' = '<hidden>': a secret must be a reference, not "
            "the value itself (for example: env:NAME or file:~/.config/NAME.secret)",
        ),
    ],
)
def test_a_refusal_names_the_parameter_the_value_and_an_example(values, message):
    assert refusal(values) == message


def test_ports_apart_from_the_edge_port_only_with_portainer():
    assert params.load({**BASE, **USERS, "registry_port": 8000}).registry_port == 8000
    assert params.load({**BASE, **USERS, "registry_port": 9443}).registry_port == 9443


def test_an_unknown_parameter_hides_its_value_and_lists_the_known_ones():
    message = refusal({"hots": "hunter2hunter2"})
    assert message.startswith("parameter 'hots' = '<hidden>': unknown parameter (for example: ")
    assert "one of: host, ssh_port, ssh_user," in message
    assert "hunter2" not in message


def test_a_missing_parameter_shows_none_of_the_others():
    # pydantic's input for a missing field is the whole mapping: a pasted password with it.
    with pytest.raises(ParameterError) as caught:
        params.load({"host": "h", "registry_users": {"admin": "MyPlainPassw0rd"}})
    assert str(caught.value) == (
        "parameter 'registry_host' = '<missing>': is required (for example: docker.example.com)"
    )


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"host: \xff\n",
            "is not UTF-8 text (byte 0xff at offset 6); save it as UTF-8",
        ),
        (b"- a\n", "must be a YAML mapping of names to values (for example: host: 192.0.2.10)"),
        (b"", "must be a YAML mapping of names to values (for example: host: 192.0.2.10)"),
    ],
)
def test_a_parameters_file_that_is_not_a_mapping_of_text(tmp_path, data, message):
    path = write(tmp_path / "p.yaml", data)
    with pytest.raises(ParameterError) as caught:
        params.read_yaml(path)
    assert str(caught.value) == f"parameter 'parameters file' = {str(path)!r}: {message}"


def test_a_missing_parameters_file_says_why(tmp_path):
    with pytest.raises(ParameterError) as caught:
        params.read_yaml(tmp_path / "nope.yaml")
    assert str(caught.value) == (
        f"parameter 'parameters file' = {str(tmp_path / 'nope.yaml')!r}: No such file or directory"
    )


def test_broken_yaml_says_where(tmp_path):
    path = write(tmp_path / "p.yaml", b"host: [\n")
    with pytest.raises(ParameterError) as caught:
        params.read_yaml(path)
    assert str(caught.value).startswith(
        f"parameter 'parameters file' = {str(path)!r}: not valid YAML: while parsing a flow node"
    )
    assert "line 2, column 1" in str(caught.value)


def test_a_key_given_twice_names_the_key_and_the_line(tmp_path):
    path = write(tmp_path / "p.yaml", b"host: a\nregistry_host: b\nhost: c\n")
    with pytest.raises(ParameterError) as caught:
        params.read_yaml(path)
    assert str(caught.value) == "parameter 'host' = '<hidden>': is given twice (line 3); keep one"


def test_the_same_key_in_two_mappings_is_not_twice(tmp_path):
    path = write(tmp_path / "p.yaml", b"registry_users: {a: env:A}\nx: {a: 1}\nhost: h\n")
    assert params.read_yaml(path) == {"registry_users": {"a": "env:A"}, "x": {"a": 1}, "host": "h"}


def test_a_parameters_file_loads(tmp_path):
    path = write(tmp_path / "p.yaml", b"host: h\nregistry_host: r\nregistry_users: {a: env:A}\n")
    p = params.load_yaml(path)
    assert (p.host, p.registry_host, list(p.registry_users)) == ("h", "r", ["a"])


def test_the_ca_folder_must_be_its_owners_alone(tmp_path):
    folder = tmp_path / "ca"
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    with pytest.raises(ParameterError) as caught:
        params.check_ca_dir(folder)
    assert str(caught.value) == (
        f"parameter 'tls_ca_dir' = {str(folder)!r}: holds the CA's private key, so it must be "
        f"yours alone (mode 750): chmod 700 {folder} "
        "(for example: ~/.local/share/swarm-registry-runbook/ca)"
    )
    for mode in (0o702, 0o720, 0o704):
        folder.chmod(mode)
        with pytest.raises(ParameterError):
            params.check_ca_dir(folder)
    folder.chmod(0o700)
    params.check_ca_dir(folder)
    params.check_ca_dir(tmp_path / "not-yet")


def test_the_ca_folder_must_be_a_folder(tmp_path):
    (tmp_path / "ca").write_text("")
    with pytest.raises(ParameterError) as caught:
        params.check_ca_dir(tmp_path / "ca")
    assert str(caught.value) == (
        f"parameter 'tls_ca_dir' = {str(tmp_path / 'ca')!r}: is not a folder "
        "(for example: ~/.local/share/swarm-registry-runbook/ca)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"ssh-ed25519 AAAA x\n",
            "{path} is a public key; give the private key (the same name without .pub)",
        ),
        (
            b"ecdsa-sha2-nistp256 AAAA x\n",
            "{path} is a public key; give the private key (the same name without .pub)",
        ),
        (
            b"sk-ssh-ed25519@openssh.com AAAA x\n",
            "{path} is a public key; give the private key (the same name without .pub)",
        ),
        (b"hello\n", "{path} is not a private key (no 'BEGIN ... PRIVATE KEY' line)"),
    ],
)
def test_only_a_private_key_is_a_key_file(tmp_path, content, message):
    path = write(tmp_path / "id", content)
    with pytest.raises(ValueError) as caught:
        params._private_key(path)
    assert str(caught.value) == message.format(path=path)


def test_a_private_key_is_found_in_the_first_4096_bytes(tmp_path):
    params._private_key(write(tmp_path / "id", b"-----BEGIN OPENSSH PRIVATE KEY-----\n"))
    with pytest.raises(ValueError, match="not a private key"):
        params._private_key(write(tmp_path / "id2", b"#" * 4096 + b"PRIVATE KEY-----"))
    with pytest.raises(ValueError) as caught:
        params._private_key(tmp_path / "none")
    assert str(caught.value) == f"cannot read {tmp_path / 'none'}: No such file or directory"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("alice", True),
        ("a" * 255, True),
        ("a" * 256, False),
        ("", False),
        ("a:b", False),
        ("a b", False),
        ("a\tb", False),
        ("a\x1fb", False),
        ("a\x7fb", True),  # DEL is not below 32: htpasswd takes it
    ],
)
def test_registry_user_names(name, ok):
    if ok:
        params._check_registry_user(name)
    else:
        with pytest.raises(ValueError) as caught:
            params._check_registry_user(name)
        assert str(caught.value) == (
            f"user name {name!r} is not allowed: it must be non-empty, without ':' or spaces"
        )


def test_the_registry_address_brackets_an_ipv6_host():
    assert params._bracket("fd00::5") == "[fd00::5]"
    assert params._bracket("registry.example.com") == "registry.example.com"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"work_dir": "rel"}, "parameter 'work_dir' = 'rel': must be an absolute path"),
        (
            {"work_dir": "/.."},
            "parameter 'work_dir' = '/..': must be a folder of its own, not / (it resolves to /)",
        ),
        (
            {"work_dir": "/a b"},
            "parameter 'work_dir' = '/a b': may hold only letters, digits and . _ / @ + - : the "
            "stack file and Docker's command lines carry it as is",
        ),
        (
            {"tls_key_type": "rsa", "tls_key_size": 256},
            "parameter 'tls_key_size' = 256: must be one of 2048, 3072, 4096 for this key type",
        ),
        (
            {"tls_key_size": 2048},
            "parameter 'tls_key_size' = 2048: must be one of 256, 384 for this key type",
        ),
        (
            {"swarm_advertise_addr": "eth0 x"},
            "parameter 'swarm_advertise_addr' = 'eth0 x': must be an IP address or an interface "
            "name",
        ),
        (
            {"registry_image": "Registry"},
            "parameter 'registry_image' = 'Registry': is not an image reference Docker accepts: "
            "[registry/]name[:tag][@sha256:digest], the name in lower case",
        ),
        (
            {"stack_name": "-x"},
            "parameter 'stack_name' = '-x': Docker names are letters, digits, '_', '.', '-'",
        ),
        (
            {"stack_name": "a" * 51},
            f"parameter 'stack_name' = '{'a' * 51}': is 51 characters; at most 50, so that "
            "Docker's service name (aaaaaaaa…_registry) stays within its 63",
        ),
        (
            {"docker_version": "v1"},
            "parameter 'docker_version' = 'v1': is not a package version (digits, letters and "
            ". : + ~ _ -)",
        ),
        ({"ssh_user": "Root"}, "parameter 'ssh_user' = 'Root': not a valid Unix user name"),
        ({"host": "1.2.3"}, "parameter 'host' = '1.2.3': not a valid host name or IP address"),
    ],
)
def test_a_field_check_says_what_is_wrong(values, message):
    assert refusal(values).startswith(message + " (for example: ")


def test_work_dir_limits_and_normal_form():
    def work_dir(value: str) -> str:
        return params.load({**BASE, **USERS, "work_dir": value}).work_dir

    assert work_dir("//srv//registry/") == "/srv/registry"
    assert work_dir("/srv/./registry/../registry") == "/srv/registry"
    assert work_dir("/" + "a" * 255) == "/" + "a" * 255
    assert refusal({"work_dir": "/" + "a" * 256}).endswith(
        ": has a path component longer than 255 bytes (for example: /home/docker)"
    )
    longest = "/" + "/".join(["a" * 203] * 5)
    assert len(longest) == 1020 and work_dir(longest + "/abc") == longest + "/abc"
    assert refusal({"work_dir": longest + "/abcd"}).endswith(
        ": is longer than 1024 characters (for example: /home/docker)"
    )


@pytest.mark.parametrize(
    ("key_type", "size"),
    [("ecdsa", 256), ("ecdsa", 384), ("rsa", 2048), ("rsa", 3072), ("rsa", 4096)],
)
def test_each_key_size_of_its_type_is_taken(key_type, size):
    p = params.load({**BASE, **USERS, "tls_key_type": key_type, "tls_key_size": size})
    assert (p.tls_key_type, p.tls_key_size) == (key_type, size)
