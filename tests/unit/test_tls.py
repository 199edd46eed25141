from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runbook_lib import tls
from runbook_lib.errors import ParameterError

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
NAMES = ["registry.example.com", "10.0.0.4"]


@pytest.fixture(scope="module")
def key():
    return tls.generate_key("ecdsa", 256)


@pytest.fixture(scope="module")
def other_key():
    return tls.generate_key("ecdsa", 256)


@pytest.fixture(scope="module")
def cert(key):
    return tls.make_server_cert(key, NAMES, 365, now=NOW)


# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_type, key_size, description",
    [("ecdsa", 256, "ECDSA P-256"), ("ecdsa", 384, "ECDSA P-384"), ("rsa", 2048, "RSA 2048")],
)
def test_generate_key_and_pem_round_trip(key_type, key_size, description):
    key = tls.generate_key(key_type, key_size)
    pem = tls.key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not encrypted
    loaded = tls.load_key(pem)
    assert tls.key_to_pem(loaded) == pem
    cert = tls.make_server_cert(key, ["registry.test"], 30, now=NOW)
    assert tls.cert_info(cert, NOW).key_type == description


@pytest.mark.parametrize(
    "key_type, key_size, param",
    [
        ("dsa", 2048, "tls_key_type"),
        ("RSA", 4096, "tls_key_type"),
        ("rsa", 1024, "tls_key_size"),
        ("rsa", 256, "tls_key_size"),
        ("ecdsa", 521, "tls_key_size"),
        ("ecdsa", "P-256", "tls_key_size"),
        ("ecdsa", True, "tls_key_size"),
    ],
)
def test_generate_key_rejects_bad_parameters(key_type, key_size, param):
    with pytest.raises(ParameterError) as err:
        tls.generate_key(key_type, key_size)
    assert err.value.name == param


def test_load_key_rejects_garbage():
    with pytest.raises(ValueError):
        tls.load_key(b"not a key")


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, dns, ips",
    [
        (["registry.example.com"], ["registry.example.com"], []),
        (["Registry.Example.COM"], ["registry.example.com"], []),
        (["registry"], ["registry"], []),
        (["*.example.com"], ["*.example.com"], []),
        (["10.0.0.5"], [], ["10.0.0.5"]),
        (["fd00::5"], [], ["fd00::5"]),
        (
            ["a.test", "10.0.0.5", "A.test", "10.0.0.5", "b.test"],
            ["a.test", "b.test"],
            ["10.0.0.5"],
        ),
        ("registry.test", ["registry.test"], []),
    ],
)
def test_split_names(names, dns, ips):
    got_dns, got_ips = tls.split_names(names)
    assert got_dns == dns
    assert got_ips == [ipaddress.ip_address(ip) for ip in ips]


@pytest.mark.parametrize(
    "names, param",
    [
        ([], "registry_host"),
        ([""], "registry_host"),
        (["bad_name.example.com"], "registry_host"),
        (["-bad.example.com"], "registry_host"),
        (["bad-.example.com"], "registry_host"),
        (["a..b"], "registry_host"),
        (["example.com."], "registry_host"),
        (["*"], "registry_host"),
        (["a.*.example.com"], "registry_host"),
        (["x" * 64 + ".example.com"], "registry_host"),
        (["registry.test\n"], "registry_host"),
        (["https://registry.test"], "registry_host"),
        (["registry.test:5000"], "registry_host"),
        (["10.0.0.256"], "registry_host"),
        (["fe80::1%eth0"], "registry_host"),
        ([None], "registry_host"),
        (["registry.test", "bad name"], "registry_names"),
        (["registry.test", "10.0.0.1.2"], "registry_names"),
    ],
)
def test_split_names_rejects_bad_names(names, param):
    with pytest.raises(ParameterError) as err:
        tls.split_names(names)
    assert err.value.name == param


# --- certificates -----------------------------------------------------------------------


def test_self_signed_cert_has_sans_and_server_extensions(key, cert):
    ext = cert.extensions
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["registry.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.4")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES[0]
    assert cert.issuer == cert.subject
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_before_utc < NOW
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert cert.serial_number > 0


def test_serials_are_random(key):
    a = tls.make_server_cert(key, NAMES, 30, now=NOW)
    b = tls.make_server_cert(key, NAMES, 30, now=NOW)
    assert a.serial_number != b.serial_number


@pytest.mark.parametrize(
    "subject",
    [
        verification.DNSName("registry.example.com"),
        verification.IPAddress(ipaddress.ip_address("10.0.0.4")),
    ],
)
def test_self_signed_cert_is_its_own_trust_anchor(cert, subject):
    # The strict (web PKI) verifier of cryptography: what clients do with certs.d/ca.crt.
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([cert]))
        .time(NOW)
        .build_server_verifier(subject)
    )
    chain = verifier.verify(cert, [])
    assert chain == [cert]


def test_self_signed_cert_passes_an_openssl_handshake(tmp_path, key):
    # Go's verifier accepts a leaf found in its roots as is; OpenSSL is checked here, strict.
    cert = tls.make_server_cert(key, NAMES, 30)  # valid today: OpenSSL uses the real clock
    (tmp_path / "cert.pem").write_bytes(tls.cert_to_pem(cert))
    (tmp_path / "key.pem").write_bytes(tls.key_to_pem(key))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=tls.cert_to_pem(cert).decode())
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="registry.example.com")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(5):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert client.version() is not None
    assert client.getpeercert()["subjectAltName"] == (
        ("DNS", "registry.example.com"),
        ("IP Address", "10.0.0.4"),
    )


def test_ca_signed_cert_verifies_against_the_ca(key):
    ca_key = tls.generate_key("ecdsa", 384)
    ca = tls.make_ca(ca_key, "Registry CA", 100, now=NOW)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    cert = tls.make_server_cert(key, NAMES, 365, ca_key, ca, now=NOW)
    assert cert.issuer == ca.subject
    assert cert.not_valid_after_utc == ca.not_valid_after_utc  # never outlives the CA
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .time(NOW)
        .build_server_verifier(verification.DNSName("registry.example.com"))
    )
    assert verifier.verify(cert, []) == [cert, ca]
    assert tls.cert_info(cert, NOW).is_self_signed is False
    assert tls.cert_info(ca, NOW).is_self_signed is True


def test_ca_key_and_cert_go_together(key, other_key):
    ca = tls.make_ca(other_key, "Registry CA", 100, now=NOW)
    with pytest.raises(ValueError, match="together"):
        tls.make_server_cert(key, NAMES, 30, ca_key=other_key)
    with pytest.raises(ValueError, match="does not match"):
        tls.make_server_cert(key, NAMES, 30, key, ca)


def test_common_name_is_cut_to_64_characters(key):
    long_name = "a" * 40 + "." + "b" * 40 + ".example.com"
    cert = tls.make_server_cert(key, [long_name], 30, now=NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == long_name[:64]
    assert tls.cert_info(cert, NOW).dns_names == (long_name,)


@pytest.mark.parametrize("days", [0, -1, 3651, 1.5, "30", True, None])
def test_days_are_validated(key, days):
    with pytest.raises(ParameterError) as err:
        tls.make_server_cert(key, NAMES, days)
    assert err.value.name == "tls_days"
    with pytest.raises(ParameterError):
        tls.make_ca(key, "CA", days)


def test_cert_pem_round_trip(cert):
    pem = tls.cert_to_pem(cert)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert tls.load_cert(pem) == cert
    with pytest.raises(ValueError):
        tls.load_cert(b"garbage")


def test_cert_info(cert):
    info = tls.cert_info(cert, NOW + dt.timedelta(days=100, hours=1))
    assert info.common_name == "registry.example.com"
    assert info.dns_names == ("registry.example.com",)
    assert info.ip_addresses == ("10.0.0.4",)
    assert info.not_after == NOW + dt.timedelta(days=365)
    assert info.not_after.tzinfo is not None
    assert info.days_left == 264
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", info.sha256)
    assert info.is_self_signed is True
    assert info.key_type == "ECDSA P-256"
    assert tls.cert_info(cert, NOW + dt.timedelta(days=366)).days_left == -1


# --- keep or renew ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, names, days_later, expected",
    [
        ("valid", NAMES, 0, None),
        ("names in another case and order", ["10.0.0.4", "REGISTRY.example.com"], 0, None),
        # A name given up may belong to another host now: the certificate must not claim it.
        (
            "fewer names than the certificate",
            ["registry.example.com"],
            0,
            "certificate also names 10.0.0.4, no longer a name of the registry",
        ),
        ("new IP", NAMES + ["10.0.0.5"], 0, "certificate does not cover 10.0.0.5"),
        (
            "new names",
            ["other.test", "fd00::1"],
            0,
            "certificate does not cover other.test, fd00::1",
        ),
        ("just enough days", NAMES, 335, None),
        ("expiring", NAMES, 353, "expires in 12 days"),
        ("expired", NAMES, 400, "expired 35 days ago"),
    ],
)
def test_needs_new_cert(key, cert, case, names, days_later, expected):
    now = NOW + dt.timedelta(days=days_later)
    got = tls.needs_new_cert(tls.cert_to_pem(cert), tls.key_to_pem(key), names, 30, now)
    assert got == expected, case


def test_needs_new_cert_missing_or_broken_files(key, other_key, cert):
    cert_pem, key_pem = tls.cert_to_pem(cert), tls.key_to_pem(key)
    cases = [
        (None, key_pem, "no certificate yet"),
        (None, None, "no certificate yet"),
        (cert_pem, None, "no private key yet"),
        (cert_pem, tls.key_to_pem(other_key), "key does not match certificate"),
    ]
    for c, k, expected in cases:
        assert tls.needs_new_cert(c, k, NAMES, now=NOW) == expected
    assert tls.needs_new_cert(b"garbage", key_pem, NAMES, now=NOW).startswith(
        "unreadable certificate: "
    )
    assert tls.needs_new_cert(cert_pem, b"garbage", NAMES, now=NOW).startswith(
        "unreadable private key: "
    )


def test_needs_new_cert_for_a_cn_only_certificate(key):
    # What the tutorial's openssl command made: no SAN at all.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.example.com")])
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    got = tls.needs_new_cert(tls.cert_to_pem(old), tls.key_to_pem(key), NAMES, now=NOW)
    assert got == "certificate does not cover registry.example.com, 10.0.0.4"


def test_needs_new_cert_validates_names(key, cert):
    with pytest.raises(ParameterError) as err:
        tls.needs_new_cert(None, None, ["bad name"])
    assert err.value.name == "registry_host"


def test_trust_problem(key, other_key, cert):
    pem = tls.cert_to_pem(cert)
    ca = tls.make_ca(other_key, "Registry CA", 100, now=NOW)
    signed = tls.cert_to_pem(tls.make_server_cert(key, NAMES, 30, other_key, ca, now=NOW))
    another_ca = tls.make_ca(key, "Another CA", 100, now=NOW)
    # A self-signed certificate vouches for itself, with or without a ca.crt yet...
    assert tls.trust_problem(pem, None, want_ca=False) is None
    assert tls.trust_problem(pem, tls.cert_to_pem(ca), want_ca=False) is None
    # ...unless the local CA is asked for.
    assert "tls_ca" in tls.trust_problem(pem, pem, want_ca=True)
    # A CA-signed certificate is kept only while ca.crt is that CA.
    assert tls.trust_problem(signed, tls.cert_to_pem(ca), want_ca=True) is None
    assert tls.trust_problem(signed, tls.cert_to_pem(ca), want_ca=False) is None
    assert "missing" in tls.trust_problem(signed, None, want_ca=True)
    assert "not the CA" in tls.trust_problem(signed, tls.cert_to_pem(another_ca), want_ca=True)
    assert "not the CA" in tls.trust_problem(signed, pem, want_ca=False)


def test_trust_problem_follows_intermediates_to_the_root(key, other_key):
    root_key, mid_key = tls.generate_key("ecdsa", 256), tls.generate_key("ecdsa", 256)
    root = tls.make_ca(root_key, "Root CA", 100, now=NOW)
    # An intermediate CA signed by the root (make_ca makes self-signed ones).
    mid = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA")]))
        .issuer_name(root.subject)
        .public_key(mid_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf = tls.make_server_cert(key, NAMES, 30, mid_key, mid, now=NOW)
    chain = tls.cert_to_pem(leaf) + tls.cert_to_pem(mid)
    assert tls.trust_problem(chain, tls.cert_to_pem(root), want_ca=False) is None
    assert tls.trust_problem(chain, tls.cert_to_pem(mid), want_ca=False) is None
    # A bundle in ca.crt counts as well.
    other_root = tls.make_ca(other_key, "Other", 100, now=NOW)
    bundle = tls.cert_to_pem(other_root) + tls.cert_to_pem(root)
    assert tls.trust_problem(chain, bundle, want_ca=True) is None
    # Without the intermediate in the file, the root alone cannot vouch for it.
    assert "not the CA" in tls.trust_problem(tls.cert_to_pem(leaf), tls.cert_to_pem(root), False)
    assert "not the CA" in tls.trust_problem(chain, tls.cert_to_pem(other_root), False)


def test_stale_trust_folders_are_those_with_our_ca_elsewhere():
    import hashlib

    from runbook_lib.certs import stale_trust

    ca = b"-----BEGIN CERTIFICATE-----\nours\n"
    ours, other = hashlib.sha256(ca).hexdigest(), "0" * 64
    listing = (
        f"{ours} /etc/docker/certs.d/reg:5000\n"
        f"{ours} /etc/docker/certs.d/reg:5001\n"
        f"{other} /etc/docker/certs.d/elsewhere:443\n"
    )
    keep = ["/etc/docker/certs.d/reg:5001"]
    assert stale_trust(listing, ca, keep) == ["/etc/docker/certs.d/reg:5000"]


def test_stale_trust_also_finds_the_certificate_being_replaced():
    """A name dropped with a new certificate: its folder holds the one being replaced,
    which the folders kept still hold too."""
    import hashlib

    from runbook_lib.certs import stale_trust

    new, old, other = b"new-ca", hashlib.sha256(b"old-ca").hexdigest(), "0" * 64
    listing = (
        f"{old} /etc/docker/certs.d/reg:5000\n"
        f"{old} /etc/docker/certs.d/dropped:5000\n"
        f"{other} /etc/docker/certs.d/elsewhere:443\n"
    )
    keep = ["/etc/docker/certs.d/reg:5000"]
    assert stale_trust(listing, new, keep) == ["/etc/docker/certs.d/dropped:5000"]
