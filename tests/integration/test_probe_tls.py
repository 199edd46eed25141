"""The probe verifies TLS: through the lab's SSH connection it asks an HTTPS server on this
machine's loopback, and refuses a certificate its CA did not sign or made for another name."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from runbook_lib import probe, tls
from tests.conftest import lab_host

pytestmark = pytest.mark.lab

NAME = "registry.test"


def _ca(common_name: str):
    key = tls.generate_key("ecdsa", 256)
    return key, tls.make_ca(key, common_name, 30)


@pytest.fixture(scope="module")
def ca():
    return _ca("Runbook test CA")


@pytest.fixture(scope="module")
def other_ca():
    # Another CA under the same name: only its key tells it apart.
    return _ca("Runbook test CA")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.served.append(self.path)
        body = b'{"answer": "from the test server"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(ca, tmp_path_factory):
    """An HTTPS server on 127.0.0.1 (a free port) with a certificate for NAME signed by
    ``ca``; its ``served`` lists the paths it answered."""
    ca_key, ca_cert = ca
    key = tls.generate_key("ecdsa", 256)
    cert = tls.make_server_cert(key, [NAME], 30, ca_key, ca_cert)
    folder = tmp_path_factory.mktemp("probe-tls")
    (folder / "server.key").write_bytes(tls.key_to_pem(key))
    (folder / "server.crt").write_bytes(tls.cert_to_pem(cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "server.crt", folder / "server.key")
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.served = []
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        thread.join(5)
        httpd.server_close()


@pytest.fixture(scope="module")
def host(lab):
    with lab_host("root") as h:
        yield h


def _get(host, server, ca_cert, name, path):
    port = server.server_address[1]
    return probe.https_get(host, port, name, tls.cert_to_pem(ca_cert), path, timeout=10)


def test_the_right_ca_and_name_answer(host, server, ca):
    answer = _get(host, server, ca[1], NAME, "/v2/right")
    assert answer.status == 200
    assert answer.json() == {"answer": "from the test server"}
    assert server.served[-1:] == ["/v2/right"]


def test_a_certificate_another_ca_signed_is_not_trusted(host, server, other_ca):
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        _get(host, server, other_ca[1], NAME, "/v2/other-ca")
    # OpenSSL: X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "unable to get local issuer
    # certificate": no CA it was given signed the certificate.
    assert err.value.verify_code == 20, err.value.verify_message
    assert "certificate verify failed" in str(err.value)
    assert "/v2/other-ca" not in server.served


def test_a_certificate_for_another_name_is_refused(host, server, ca):
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        _get(host, server, ca[1], "other.test", "/v2/other-name")
    # OpenSSL: X509_V_ERR_HOSTNAME_MISMATCH.
    assert err.value.verify_code == 62, err.value.verify_message
    assert "other.test" in err.value.verify_message
    assert "/v2/other-name" not in server.served
