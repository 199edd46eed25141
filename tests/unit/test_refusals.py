"""The pure modules' refusals, word for word, and the edges of what they accept: the stack
file's settings, the certificate's names and sizes, registry users and bcrypt costs, and the
path check that root's files live where only root can write."""

from __future__ import annotations

import os

import pytest

from runbook_lib import htpasswd, safepath, stackfile, tls
from runbook_lib.errors import ParameterError
from runbook_lib.hosts import LocalHost

DIGESTS = {"cert_digest": "0" * 12, "key_digest": "1" * 12, "htpasswd_digest": "2" * 12}
NAME_RULE = "must start with a letter or digit, then letters, digits, '_', '.' or '-'"


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(ParameterError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"placement": "node.role == manager"},
            "parameter 'registry_placement' = 'node.role == manager': must be a list of "
            "constraints (for example: ['node.role == manager'])",
        ),
        (
            {"placement": (1,)},
            "parameter 'registry_placement' = (1,): must be a list of constraints "
            "(for example: ['node.role == manager'])",
        ),
        (
            {"stack": "bad name"},
            f"parameter 'registry_stack' = 'bad name': {NAME_RULE} (for example: 'registry')",
        ),
        (
            {"service": "-x"},
            f"parameter 'registry_service' = '-x': {NAME_RULE} (for example: 'registry')",
        ),
        (
            {"volume": ""},
            f"parameter 'registry_volume' = '': {NAME_RULE} (for example: 'registry')",
        ),
        (
            {"network": 5},
            f"parameter 'registry_network' = 5: {NAME_RULE} (for example: 'registry')",
        ),
        ({"port": 0}, "parameter 'registry_port' = 0: must be 1 to 65535 (for example: 5000)"),
        (
            {"port": 65536},
            "parameter 'registry_port' = 65536: must be 1 to 65535 (for example: 5000)",
        ),
        (
            {"port": True},
            "parameter 'registry_port' = True: must be 1 to 65535 (for example: 5000)",
        ),
        (
            {"port": "5000"},
            "parameter 'registry_port' = '5000': must be 1 to 65535 (for example: 5000)",
        ),
        (
            {"publish_mode": "bridge"},
            "parameter 'registry_publish_mode' = 'bridge': must be 'host' or 'ingress' "
            "(for example: 'host')",
        ),
        ({"replicas": 0}, "parameter 'registry_replicas' = 0: must be at least 1 (for example: 1)"),
        (
            {"restart_condition": "always"},
            "parameter 'registry_restart_condition' = 'always': must be 'none', 'on-failure' "
            "or 'any' (for example: 'on-failure')",
        ),
        (
            {"image": "registry 2"},
            "parameter 'registry_image' = 'registry 2': must be an image (for example: 'registry:2')",
        ),
        (
            {"image": 2},
            "parameter 'registry_image' = 2: must be an image (for example: 'registry:2')",
        ),
        ({"realm": 'a"b'}, "parameter 'registry_realm' = 'a\"b': must be one line without '\"'"),
        ({"realm": "a\nb"}, "parameter 'registry_realm' = 'a\\nb': must be one line without '\"'"),
        (
            {"cert_file": "certs/registry.crt"},
            "parameter 'cert_file' = 'certs/registry.crt': must be an absolute path on the host",
        ),
        ({"key_file": "k"}, "parameter 'key_file' = 'k': must be an absolute path on the host"),
        (
            {"htpasswd_file": None},
            "parameter 'htpasswd_file' = None: must be an absolute path on the host",
        ),
        (
            {"key_digest": "XYZ"},
            "parameter 'key_digest' = 'XYZ': must be 12 hex digits (for example: file_digest(data))",
        ),
        (
            {"cert_digest": "0" * 13},
            f"parameter 'cert_digest' = '{'0' * 13}': must be 12 hex digits (for example: file_digest(data))",
        ),
        (
            {"htpasswd_digest": 12},
            "parameter 'htpasswd_digest' = 12: must be 12 hex digits (for example: file_digest(data))",
        ),
    ],
)
def test_the_stack_file_refuses_what_docker_would(settings, message):
    assert refusal(stackfile.RegistryStack, **{**DIGESTS, **settings}) == message


@pytest.mark.parametrize(
    "settings",
    [
        {"port": 1},
        {"port": 65535},
        {"replicas": 1},
        {"publish_mode": "ingress"},
        {"restart_condition": "none"},
        {"restart_condition": "any"},
        {"placement": ["node.role == manager", "node.labels.registry == true"]},
        {"placement": []},
        {"stack": "a", "service": "b.c", "volume": "d_e", "network": "f-g"},
    ],
)
def test_the_stack_file_takes_the_edges_of_what_docker_does(settings):
    stack = stackfile.RegistryStack(**{**DIGESTS, **settings})
    assert isinstance(stack.placement, tuple)
    assert stackfile.render(stack)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: tls.validate_key_type("dsa", 1024),
            "parameter 'tls_key_type' = 'dsa': must be 'rsa' or 'ecdsa' (for example: 'ecdsa')",
        ),
        (
            lambda: tls.validate_key_type("rsa", 1024),
            "parameter 'tls_key_size' = 1024: must be one of 2048, 3072, 4096 for rsa "
            "(for example: 2048)",
        ),
        (
            lambda: tls.validate_key_type("ecdsa", True),
            "parameter 'tls_key_size' = True: must be one of 256, 384 for ecdsa (for example: 256)",
        ),
        (
            lambda: tls.validate_key_type("ecdsa", 2048),
            "parameter 'tls_key_size' = 2048: must be one of 256, 384 for ecdsa (for example: 256)",
        ),
        (
            lambda: tls.split_names([]),
            "parameter 'registry_host' = '': is empty (for example: 'registry.example.com')",
        ),
        (
            lambda: tls.split_names(["ok.example", ""]),
            "parameter 'registry_names' = '': must be a host name or an IP address "
            "(for example: 'registry.example.com' or '10.0.0.5')",
        ),
        (
            lambda: tls.split_names([5]),
            "parameter 'registry_host' = 5: must be a host name or an IP address "
            "(for example: 'registry.example.com' or '10.0.0.5')",
        ),
        (
            lambda: tls.split_names(["fe80::1%eth0"]),
            "parameter 'registry_host' = 'fe80::1%eth0': an IPv6 zone cannot be in a "
            "certificate (for example: 'fd00::5')",
        ),
        (
            lambda: tls.split_names(["a_b.example"]),
            "parameter 'registry_host' = 'a_b.example': is not a valid host name (letters, "
            "digits, '-', dots) (for example: 'registry.example.com' or '10.0.0.5')",
        ),
        (
            lambda: tls.split_names(["ok", "1.2.3"]),
            "parameter 'registry_names' = '1.2.3': is not a valid IP address (for example: '10.0.0.5')",
        ),
        (
            lambda: tls.split_names(["*"]),
            "parameter 'registry_host' = '*': is not a valid host name (letters, digits, '-', "
            "dots) (for example: 'registry.example.com' or '10.0.0.5')",
        ),
        (
            lambda: tls._validate_days(0),
            "parameter 'tls_days' = 0: must be a whole number of days, 1 to 3650 (for example: 825)",
        ),
        (
            lambda: tls._validate_days(3651),
            "parameter 'tls_days' = 3651: must be a whole number of days, 1 to 3650 "
            "(for example: 825)",
        ),
        (
            lambda: tls._validate_days(True),
            "parameter 'tls_days' = True: must be a whole number of days, 1 to 3650 "
            "(for example: 825)",
        ),
        (
            lambda: tls._validate_days(30.0),
            "parameter 'tls_days' = 30.0: must be a whole number of days, 1 to 3650 "
            "(for example: 825)",
        ),
    ],
)
def test_the_certificate_refuses_names_sizes_and_days(call, message):
    assert refusal(call) == message


def test_the_certificate_takes_names_at_their_edges():
    label, longest = "a" * 63, ".".join(["a" * 63] * 3 + ["a" * 61])
    assert len(longest) == 253
    assert tls.split_names([f"{label}.example", longest, "*.Example.com", "10.0.0.5"]) == (
        [f"{label}.example", longest, "*.example.com"],
        [tls.ipaddress.ip_address("10.0.0.5")],
    )
    assert tls.split_names("one.example") == (["one.example"], [])
    assert tls.split_names(["a.example", "A.example", "fd00::5", "fd00::5"]) == (
        ["a.example"],
        [tls.ipaddress.ip_address("fd00::5")],
    )
    for bad in ("a" * 64 + ".example", longest + "a", "-a.example", "a-.example", "a..b"):
        with pytest.raises(ParameterError):
            tls.split_names([bad])
    tls._validate_days(1)
    tls._validate_days(3650)
    for key_type, size in (("rsa", 2048), ("rsa", 4096), ("ecdsa", 256), ("ecdsa", 384)):
        tls.validate_key_type(key_type, size)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: htpasswd.validate_username(""),
            "parameter 'registry_users' = '': a user name cannot be empty (for example: 'alice')",
        ),
        (
            lambda: htpasswd.validate_username(None),
            "parameter 'registry_users' = None: a user name cannot be empty (for example: 'alice')",
        ),
        (
            lambda: htpasswd.validate_username("a:b"),
            "parameter 'registry_users' = 'a:b': a user name cannot contain ':' (for example: 'alice')",
        ),
        (
            lambda: htpasswd.validate_username("a b"),
            "parameter 'registry_users' = 'a b': a user name cannot contain spaces or control "
            "characters",
        ),
        (
            lambda: htpasswd.validate_username("a\x7f"),
            "parameter 'registry_users' = 'a\\x7f': a user name cannot contain spaces or control "
            "characters",
        ),
        (
            lambda: htpasswd.validate_cost(3),
            "parameter 'registry_bcrypt_cost' = 3: must be 4 to 16 (for example: 10)",
        ),
        (
            lambda: htpasswd.validate_cost(17),
            "parameter 'registry_bcrypt_cost' = 17: must be 4 to 16 (for example: 10)",
        ),
        (
            lambda: htpasswd.validate_cost(True),
            "parameter 'registry_bcrypt_cost' = True: must be 4 to 16 (for example: 10)",
        ),
        (
            lambda: htpasswd.validate_cost(10.0),
            "parameter 'registry_bcrypt_cost' = 10.0: must be 4 to 16 (for example: 10)",
        ),
        (
            lambda: htpasswd.validate_password("alice", "short"),
            "parameter 'registry_users' = '<hidden>': the password of 'alice' is shorter than "
            "12 characters",
        ),
    ],
)
def test_registry_users_and_costs_are_refused_in_words(call, message):
    assert refusal(call) == message


def test_user_names_and_costs_at_their_edges():
    htpasswd.validate_username("a" * 255)
    assert refusal(htpasswd.validate_username, "a" * 256).endswith(
        ": a user name has at most 255 characters"
    )
    htpasswd.validate_cost(4)
    htpasswd.validate_cost(16)


@pytest.mark.skipif(os.geteuid() != 0, reason="root's trust is about folders root owns")
def test_the_path_check_reads_the_real_folders(tmp_path):
    host = LocalHost()
    work = tmp_path / "work"
    work.mkdir(mode=0o755)
    for folder in (tmp_path, work):
        folder.chmod(0o755)
    safepath.check(host, "work_dir", str(work / "certs" / "registry.key"))
    work.chmod(0o775)
    with pytest.raises(safepath.UnsafePath) as caught:
        safepath.check(host, "work_dir", str(work / "certs" / "registry.key"))
    message = str(caught.value)
    assert message.startswith(
        "parameter 'work_dir': root would trust files that someone else can replace: "
        f"{work} is writable by its group (mode 775). The registry's key, users and stack "
        "must live where only root can write, all the way up: choose another work_dir"
    )
    assert message.endswith("(and replace symbolic links by real folders), then run again.")
    work.chmod(0o755)
    (tmp_path / "link").symlink_to(work)
    with pytest.raises(safepath.UnsafePath, match=f"{tmp_path / 'link'} is a symbolic link"):
        safepath.check(host, "work_dir", str(tmp_path / "link" / "certs"))
