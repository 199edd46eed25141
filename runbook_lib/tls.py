"""The registry's TLS key and certificate: generate, describe, and decide whether to renew.

The tutorial ran ``openssl req -newkey rsa:4096 -x509`` and set only a Common Name. Go
clients (Docker among them) ignore the CN since Go 1.15 and reject such a certificate, so
every name the registry is reached by goes into the subjectAltName (DNS or IP); the CN is
kept for people reading the certificate.

Two modes:

* self-signed (the tutorial's): clients trust the server certificate itself, copied to
  ``/etc/docker/certs.d/HOST:PORT/ca.crt``. It is marked ``CA:FALSE``: Go accepts a leaf
  that is itself in its root pool without any CA flag (``Certificate.Verify`` returns the
  one-certificate chain when ``opts.Roots.contains(c)``), OpenSSL accepts it as well, and
  stricter verifiers (browsers, rustls, ``cryptography``) reject a CA certificate that is
  used as a server certificate.
* a small local CA (:func:`make_ca`) signing the server certificate: clients trust the CA,
  and the server certificate can be renewed without touching the clients.

Nothing here touches a host: the caller reads and writes the PEM files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ParameterError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

KEY_SIZES = {"rsa": (2048, 3072, 4096), "ecdsa": (256, 384)}
"""Allowed ``tls_key_size`` per ``tls_key_type``; for ECDSA the size names the curve."""

_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384"}
MAX_DAYS = 3650
# Certificates start one hour in the past so that a host whose clock lags still accepts them.
BACKDATE = dt.timedelta(hours=1)
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def validate_key_type(key_type: str, key_size: int) -> None:
    """Raise :class:`ParameterError` unless ``key_type``/``key_size`` is a supported pair."""
    if key_type not in KEY_SIZES:
        raise ParameterError("tls_key_type", key_type, "must be 'rsa' or 'ecdsa'", "'ecdsa'")
    sizes = KEY_SIZES[key_type]
    if isinstance(key_size, bool) or key_size not in sizes:
        allowed = ", ".join(str(s) for s in sizes)
        raise ParameterError(
            "tls_key_size", key_size, f"must be one of {allowed} for {key_type}", str(sizes[0])
        )


def generate_key(key_type: str, key_size: int) -> PrivateKey:
    """Generate a private key: ``("rsa", 4096)`` (slow: seconds) or ``("ecdsa", 256)``."""
    validate_key_type(key_type, key_size)
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return ec.generate_private_key(_CURVES[key_size]())


def key_to_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (the registry cannot read an encrypted key)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key; ``ValueError`` if unreadable or not RSA/ECDSA."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"unsupported key type {type(key).__name__}; use RSA or ECDSA")
    return key


def split_names(names: Sequence[str]) -> tuple[list[str], list[IPAddress]]:
    """Validate the registry's names and split them into DNS names and IP addresses.

    The first name is the ``registry_host`` parameter, the others ``registry_names``; errors
    name the parameter accordingly. DNS names are lower-cased; duplicates are dropped.

    >>> split_names(["Registry.example.com", "10.0.0.5"])
    (['registry.example.com'], [IPv4Address('10.0.0.5')])
    """
    parsed = _parse_names(names)
    dns = [n for n in parsed if isinstance(n, str)]
    return dns, [n for n in parsed if not isinstance(n, str)]


def _parse_names(names: Sequence[str]) -> list[str | IPAddress]:
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ParameterError("registry_host", "", "is empty", "'registry.example.com'")
    parsed: list[str | IPAddress] = []
    for i, name in enumerate(names):
        value = _parse_name("registry_host" if i == 0 else "registry_names", name)
        if value not in parsed:
            parsed.append(value)
    return parsed


def _parse_name(param: str, name: str) -> str | IPAddress:
    example = "'registry.example.com' or '10.0.0.5'"
    if not isinstance(name, str) or not name:
        raise ParameterError(param, name, "must be a host name or an IP address", example)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            raise ParameterError(
                param, name, "an IPv6 zone cannot be in a certificate", "'fd00::5'"
            )
        return ip
    host = name.lower()
    labels = host.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ParameterError(
            param, name, "is not a valid host name (letters, digits, '-', dots)", example
        )
    if all(label.isdigit() for label in labels):
        raise ParameterError(param, name, "is not a valid IP address", "'10.0.0.5'")
    return host


def _validate_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ParameterError(
            "tls_days", days, f"must be a whole number of days, 1 to {MAX_DAYS}", "825"
        )


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) if now is None else now


def _name(common_name: str) -> x509.Name:
    # X.509 limits the CN to 64 characters; the SAN carries the full names anyway.
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _key_usage(
    *, digital_signature: bool, key_encipherment: bool, cert_sign: bool
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    key: PrivateKey, common_name: str, days: int, *, now: dt.datetime | None = None
) -> x509.Certificate:
    """A self-signed CA certificate (``CA:TRUE``, path length 0) to sign the server's."""
    _validate_days(days)
    now = _now(now)
    ski = _ski(key)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=False, cert_sign=True),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def make_server_cert(
    key: PrivateKey,
    names: Sequence[str],
    days: int,
    ca_key: PrivateKey | None = None,
    ca_cert: x509.Certificate | None = None,
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The registry's server certificate for ``names``; self-signed unless a CA is given.

    A certificate signed by a CA never outlives the CA.
    """
    parsed = _parse_names(names)
    _validate_days(days)
    if (ca_key is None) != (ca_cert is None):
        raise ValueError("ca_key and ca_cert must be given together")
    now = _now(now)
    not_after = now + dt.timedelta(days=days)
    subject = _name(str(parsed[0]))
    if ca_key is None or ca_cert is None:
        signer, issuer, issuer_ski = key, subject, _ski(key)
    else:
        if not _same_public_key(ca_key, ca_cert):
            raise ValueError("ca_key does not match ca_cert")
        signer, issuer, issuer_ski = ca_key, ca_cert.subject, _ski(ca_key)
        not_after = min(not_after, ca_cert.not_valid_after_utc)
    sans = [x509.DNSName(n) if isinstance(n, str) else x509.IPAddress(n) for n in parsed]
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(
                digital_signature=True,
                # RSA key exchange (TLS 1.2 clients) encrypts with the certificate's key.
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                cert_sign=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    """Load the first certificate of a PEM file; ``ValueError`` if unreadable."""
    return x509.load_pem_x509_certificate(pem)


@dataclass(frozen=True)
class CertInfo:
    """What an operator wants to know about a certificate."""

    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_after: dt.datetime
    days_left: int
    sha256: str
    is_self_signed: bool
    key_type: str


def cert_info(cert: x509.Certificate, now: dt.datetime | None = None) -> CertInfo:
    """Describe ``cert``; ``days_left`` is negative once it has expired."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    dns, ips = _sans(cert)
    not_after = cert.not_valid_after_utc
    return CertInfo(
        common_name=str(cns[0].value) if cns else "",
        dns_names=tuple(dns),
        ip_addresses=tuple(str(ip) for ip in ips),
        not_after=not_after,
        days_left=(not_after - _now(now)).days,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        is_self_signed=_is_self_signed(cert),
        key_type=_describe_key(cert.public_key()),
    )


def needs_new_cert(
    cert_pem: bytes | None,
    key_pem: bytes | None,
    names: Sequence[str],
    min_days_left: int = 30,
    now: dt.datetime | None = None,
) -> str | None:
    """Why the certificate on the host must be replaced, or ``None`` to keep it.

    A certificate for exactly these names, with ``min_days_left`` days or more to go, is
    kept even if other settings (key type, days) changed since it was made, so that running
    the step again changes nothing.
    """
    dns, ips = split_names(names)
    if cert_pem is None:
        return "no certificate yet"
    if key_pem is None:
        return "no private key yet"
    try:
        cert = load_cert(cert_pem)
    except ValueError as exc:
        return f"unreadable certificate: {exc}"
    try:
        key = load_key(key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"unreadable private key: {exc}"
    if not _same_public_key(key, cert):
        return "key does not match certificate"
    have_dns, have_ips = _sans(cert)
    missing = [n for n in dns if n not in have_dns] + [str(ip) for ip in ips if ip not in have_ips]
    if missing:
        return f"certificate does not cover {', '.join(missing)}"
    extra = [n for n in have_dns if n not in dns] + [str(ip) for ip in have_ips if ip not in ips]
    if extra:
        # The names changed: a name given up may now belong to another host.
        return f"certificate also names {', '.join(extra)}, no longer a name of the registry"
    days_left = cert_info(cert, now).days_left
    if days_left < 0:
        return f"expired {-days_left} days ago"
    if days_left < min_days_left:
        return f"expires in {days_left} days"
    return None


def trust_problem(cert_pem: bytes, ca_pem: bytes | None, want_ca: bool) -> str | None:
    """Why ``ca.crt`` cannot vouch for a certificate that would otherwise be kept (a reason
    to make a new one), or ``None``.

    A self-signed certificate vouches for itself, and ``ca.crt`` is then made a copy of it
    (a registry set up by the tutorial's commands has no ``ca.crt`` at all), unless the
    local CA is asked for. A certificate signed by a CA is kept while ``ca.crt`` holds that
    CA, or a root its file's intermediates lead to: clients are given ``ca.crt`` and
    nothing else.
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)  # the server's, then intermediates
    except ValueError as exc:
        return f"unreadable certificate chain: {exc}"
    cert = chain[0]
    if _is_self_signed(cert):
        return "tls_ca asks for a certificate signed by the local CA" if want_ca else None
    if not ca_pem:
        return "ca.crt, the CA that signed it, is missing"
    try:
        anchors = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        return "ca.crt is unreadable"
    if not _leads_to(cert, chain[1:], anchors):
        return "ca.crt is not the CA that signed it"
    return None


def _leads_to(
    cert: x509.Certificate, intermediates: list[x509.Certificate], anchors: list[x509.Certificate]
) -> bool:
    """Whether ``cert`` is signed by one of ``anchors``, directly or through intermediates."""
    if any(_signed_by(cert, a) for a in anchors):
        return True
    return any(
        _signed_by(cert, i) and _leads_to(i, [x for x in intermediates if x is not i], anchors)
        for i in intermediates
    )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _sans(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    return dns, list(san.get_values_for_type(x509.IPAddress))


def _same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    def spki(public_key: object) -> bytes:
        return public_key.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return spki(key.public_key()) == spki(cert.public_key())


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _describe_key(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVE_NAMES.get(public_key.curve.name, public_key.curve.name)}"
    return type(public_key).__name__
