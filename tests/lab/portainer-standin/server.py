#!/usr/bin/python3
"""A stand-in for Portainer CE's server and agent, for the lab, where no image can be pulled.

    server.py [FLAGS]          the server (image portainer/portainer-ce:lts)
    server.py agent            the agent (image portainer/agent:lts)

Python 3's standard library only (Debian's python3 in the image) and Debian's openssl for
the self-signed certificates. It answers the part of Portainer's API that the runbook uses,
with the status codes, headers and JSON bodies of Portainer 2.23.0's source
(github.com/portainer/portainer at cc75167, github.com/portainer/agent at cedb4e4):

  api/cli/cli.go, api/cli/defaults.go    the flags: -H/--host, --tlsverify, --tlsskipverify,
                                          --admin-password, --admin-password-file, --bind
                                          (:9000), --bind-https (:9443), --tunnel-port (8000),
                                          --data (/data), --http-disabled, --http-enabled;
                                          --admin-password with --admin-password-file is refused
  api/cmd/portainer/main.go               --admin-password-file: the file's text less one
                                          trailing newline becomes user "admin" when there is
                                          no administrator yet (no length check)
  api/datastore/init.go                   plain HTTP on --bind is on for a new data folder;
                                          the minimum password length is 12
  api/internal/ssl/ssl.go                 a self-signed certificate in DATA/certs, made once
  api/adminmonitor/admin_monitor.go       5 minutes after the start without an administrator
                                          the instance disables itself: every /api request but
                                          /api/status and /api/settings/public then answers
                                          303, header redirect-reason: AdminInitTimeout, body
                                          {"message":"Administrator initialization timeout",...}
                                          until the process restarts
  api/http/handler/system/status.go       GET /api/system/status and /api/status:
                                          {"Version", "InstanceID"}
  api/http/handler/users/admin_check.go   GET /api/users/admin/check: 204, or 404
  api/http/handler/users/admin_init.go    POST /api/users/admin/init: 400 bad payload, 409
                                          an administrator exists, 400 password too short, 200
                                          with the user (its password hash included, as there)
  api/http/handler/auth/authenticate.go   POST /api/auth: {"jwt": ...} and the
                                          portainer_api_key cookie; 422 "Invalid credentials"
  api/jwt/jwt.go                          HS256 tokens, a key made at each start, 8 hours
  api/http/security/bouncer.go            "Authorization: Bearer JWT" (or ?token=, or the
                                          cookie) for the admin routes; 401 without one
  api/http/handler/registries/*.go        GET/POST /api/registries, GET/DELETE
                                          /api/registries/{id}: 409 for a name or for a URL
                                          with the same credentials already registered; the
                                          password hidden in create and inspect, not in list
  pkg/libhttp/error/error.go              errors as {"message", "details"}
  api/internal/endpointutils/endpoint_setup.go, api/http/client/client.go
                                          once an administrator is created, -H tcp://H:P is
                                          pinged (GET https://H:P/_ping, 3 s, any status): an
                                          answer with a Portainer-Agent header makes the
                                          environment "primary" of type 2 (agent); no answer
                                          is fatal: the process exits 1
  agent: http/handler/handler.go, http/handler/ping/ping.go, http/security/notary.go,
         http/server.go, agent.go
                                          HTTPS on AGENT_PORT (9001) with a self-signed
                                          certificate; every answer carries Portainer-Agent,
                                          Portainer-Agent-API-Version and
                                          Portainer-Agent-Platform; GET /ping is 204; anything
                                          else without signature headers is 403

Not implemented: the web UI (/ serves one line of text), Docker management (the agent
proxies nothing to the Docker socket and has no cluster), the Edge tunnel on 8000 (a plain
HTTP 404), CSRF checks, rate limiting of /api/auth, API keys (X-API-KEY), users other than
the administrator, PUT on registries, every other endpoint (404 "404 page not found").

The setup token: Portainer 2.43 and later print a one-time token in their log and require
it as the X-Setup-Token header of POST /api/users/admin/init (portainer/portainer#13250);
the source read here (2.23.0) predates it. With PORTAINER_STANDIN_SETUP_TOKEN=1 the
stand-in does the same, answering 403 {"message":"Invalid setup token"} for a missing or
wrong one: that status and message are assumptions, not read in Portainer's source.

Environment: PORTAINER_STANDIN_INIT_TIMEOUT (seconds, default 300: the administrator
window), PORTAINER_STANDIN_SETUP_TOKEN (1: require the setup token), AGENT_PORT (the
agent's port, 9001), AGENT_CLUSTER_ADDR (logged, not used).

State: DATA/state.json (instance ID, administrator, registries, environments), written
atomically, so that it outlives a restart as Portainer's volume does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = "2.23.0"  # portainer.APIVersion and agent.Version in the source above
AGENT_API_VERSION = "2"
PLATFORM_DOCKER = "1"
ADMIN_ROLE = 1
CUSTOM_REGISTRY = 3
REGISTRY_TYPES = range(1, 8)
MIN_PASSWORD = 12
SESSION = 8 * 3600
AGENT_ON_DOCKER = 2
DOCKER_ENVIRONMENT = 1
EXEMPT = ("/api/status", "/api/settings/public")  # served even when disabled


def log(level: str, msg: str, **fields: object) -> None:
    extra = "".join(f" | {k}={v}" for k, v in fields.items())
    stamp = time.strftime("%Y/%m/%d %I:%M%p", time.localtime())
    print(f"{stamp} {level} > {msg}{extra}", flush=True)


def capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


def error_body(message: str, err: str | None = None) -> dict:
    return {"message": message, "details": capitalize(err if err is not None else message)}


def make_certificate(cert: str, key: str, host: str) -> None:
    """A self-signed certificate for localhost and HOST, valid 5 years (ssl.go, libcrypto)."""
    os.makedirs(os.path.dirname(cert), exist_ok=True)
    san = "DNS:localhost" + (f",DNS:{host}" if host and host != "localhost" else "")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1825", "-subj", "/O=Portainer/CN=localhost",
         "-addext", f"subjectAltName={san}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def serve(address: tuple[str, int], handler: type, tls: ssl.SSLContext | None) -> None:
    httpd = ThreadingHTTPServer(address, handler)
    httpd.daemon_threads = True
    if tls is not None:
        # The handshake happens in the request's thread, not in the accepting one.
        httpd.socket = tls.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


STOP = {signal.SIGTERM, signal.SIGINT}


def wait_for_signal() -> None:
    """Wait for SIGTERM or SIGINT, then exit at once (the state is only ever replaced whole).
    They are blocked from the start (see the end of this file), so every thread inherits the
    mask and only this wait receives them: a handler would run only when the kernel chose
    the main thread, and as PID 1 in a container the process would otherwise ignore them."""
    signal.sigwait(STOP)
    os._exit(0)


def parse_bind(value: str, default_host: str = "") -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or default_host, int(port))


# -- passwords and tokens ------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 200_000).hex()
    return f"pbkdf2-sha256$200000${salt}${digest}"


def check_password(stored: str, password: str) -> bool:
    if stored.startswith("pbkdf2-sha256$"):
        _, rounds, salt, digest = stored.split("$")
        mine = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(rounds))
        return hmac.compare_digest(mine.hex(), digest)
    # A bcrypt hash given with --admin-password: glibc's crypt(3) knows $2b$/$2y$.
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # noqa: PLC0415 (deprecated; only for --admin-password hashes)
    except ImportError:
        return False
    result = crypt.crypt(password, stored)
    return bool(result) and hmac.compare_digest(result, stored)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """HS256 JWTs signed with a key made at start (jwt.go): a restart invalidates them."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)

    def issue(self, user: dict) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "id": user["Id"], "username": user["Username"], "role": user["Role"],
            "scope": "default", "forceChangePassword": False,
            "jti": str(uuid.uuid4()), "iat": now, "exp": now + SESSION,
        }  # fmt: skip
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = b64(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}", claims["exp"]

    def verify(self, token: str) -> dict | None:
        try:
            head, body, sig = token.split(".")
            want = hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(unb64(sig), want):
                return None
            claims = json.loads(unb64(body))
        except ValueError:
            return None
        return claims if claims.get("exp", 0) > time.time() else None


# -- state ---------------------------------------------------------------------------------


class State:
    """DATA/state.json, written whole to a temporary file and renamed."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, "state.json")
        self.lock = threading.RLock()
        try:
            with open(self.path) as f:
                self.doc = json.load(f)
        except FileNotFoundError:
            self.doc = {}
        self.doc.setdefault("InstanceID", str(uuid.uuid4()))
        self.doc.setdefault("Users", [])
        self.doc.setdefault("Registries", [])
        self.doc.setdefault("Endpoints", [])
        self.save()

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def admins(self) -> list[dict]:
        return [u for u in self.doc["Users"] if u["Role"] == ADMIN_ROLE]

    def user(self, *, name: str | None = None, uid: int | None = None) -> dict | None:
        for u in self.doc["Users"]:
            if u["Username"] == name or u["Id"] == uid:
                return u
        return None

    def add_user(self, username: str, password_hash: str) -> dict:
        user = {
            "Id": max((u["Id"] for u in self.doc["Users"]), default=0) + 1,
            "Username": username, "Password": password_hash, "Role": ADMIN_ROLE,
            "TokenIssueAt": 0, "ThemeSettings": {"color": ""}, "UseCache": False,
            "PortainerAuthorizations": None, "EndpointAuthorizations": None,
        }  # fmt: skip
        self.doc["Users"].append(user)
        self.save()
        return user


# -- the server ----------------------------------------------------------------------------


class Portainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = State(args.data)
        self.tokens = Tokens()
        self.disabled = False
        self.setup_token: str | None = None
        self.admin_created = threading.Event()

    def start_monitor(self, timeout: float) -> None:
        """admin_monitor.go: disable the instance if no administrator after TIMEOUT."""

        def watch() -> None:
            time.sleep(timeout)
            with self.state.lock:
                if not self.state.admins():
                    log(
                        "INF",
                        "the Portainer instance timed out for security purposes, to re-enable "
                        "your Portainer instance, you will need to restart Portainer",
                    )
                    self.disabled = True

        threading.Thread(target=watch, daemon=True).start()

    def init_endpoint(self) -> None:
        """endpoint_setup.go: after the administrator exists, ping -H once; fatal if silent."""
        self.admin_created.wait()
        url = self.args.host
        if not url:
            return
        with self.state.lock:
            if self.state.doc["Endpoints"]:
                log("INF", "instance already has defined environments, skipping the "
                    "environment defined via CLI")  # fmt: skip
                return
        tls = self.args.tlsverify or self.args.tlsskipverify
        host, port = parse_bind(url.removeprefix("tcp://"))
        try:
            if tls:
                ctx = ssl.create_default_context()
                if self.args.tlsskipverify:
                    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    host, port, timeout=3, context=ctx
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=3)
            conn.request("GET", "/_ping")
            resp = conn.getresponse()
            resp.read()
            agent = resp.getheader("Portainer-Agent") is not None
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            log("FTL", "failed initializing environment", error=f"{url}: {exc}")
            os._exit(1)
        with self.state.lock:
            self.state.doc["Endpoints"].append({
                "Id": 1, "Name": "primary", "URL": url, "GroupId": 1,
                "Type": AGENT_ON_DOCKER if agent else DOCKER_ENVIRONMENT, "Status": 1,
                "TLSConfig": {"TLS": tls, "TLSSkipVerify": bool(self.args.tlsskipverify)},
            })  # fmt: skip
            self.state.save()
        log("INF", "environment created", name="primary", url=url, agent=agent)


def main_server(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="portainer")
    ap.add_argument("-H", "--host", default="")
    ap.add_argument("--tlsverify", action="store_true")
    ap.add_argument("--tlsskipverify", action="store_true")
    ap.add_argument("--admin-password", default="")
    ap.add_argument("--admin-password-file", default="")
    ap.add_argument("-p", "--bind", default=":9000")
    ap.add_argument("--bind-https", default=":9443")
    ap.add_argument("--tunnel-addr", default="0.0.0.0")
    ap.add_argument("--tunnel-port", default="8000")
    ap.add_argument("-d", "--data", default="/data")
    ap.add_argument("--http-disabled", action="store_true")
    ap.add_argument("--http-enabled", action="store_true")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    if args.admin_password and args.admin_password_file:
        print("Cannot use --admin-password with --admin-password-file", file=sys.stderr)
        return 1
    if args.host and not args.host.startswith(("unix://", "tcp://", "npipe://")):
        print("Invalid environment protocol: Portainer only supports unix://, npipe:// or "
              "tcp://", file=sys.stderr)  # fmt: skip
        return 1
    os.makedirs(args.data, exist_ok=True)
    app = Portainer(args)
    log("INF", "starting Portainer (stand-in)", version=VERSION)

    cert, key = (os.path.join(args.data, "certs", n) for n in ("cert.pem", "key.pem"))
    if not (os.path.exists(cert) and os.path.exists(key)):
        log("INF", "no cert files found, generating self signed SSL certificates")
        make_certificate(cert, key, os.uname().nodename)

    password_hash = ""
    if args.admin_password_file:
        try:
            with open(args.admin_password_file) as f:
                password_hash = hash_password(f.read().removesuffix("\n"))
        except OSError as exc:
            log("FTL", "failed getting admin password file", error=str(exc))
            return 1
    elif args.admin_password:
        password_hash = args.admin_password
    if password_hash:
        with app.state.lock:
            if not app.state.admins():
                log("INF", "created admin user with the given password.")
                app.state.add_user("admin", password_hash)
                app.admin_created.set()
            else:
                log("INF", "instance already has an administrator user defined, skipping admin "
                    "password related flags.")  # fmt: skip
    threading.Thread(target=app.init_endpoint, daemon=True).start()

    if not app.state.admins() and os.environ.get("PORTAINER_STANDIN_SETUP_TOKEN") == "1":
        app.setup_token = secrets.token_urlsafe(24)
        log("INF", "setup token (required as X-Setup-Token by POST /api/users/admin/init)",
            token=app.setup_token)  # fmt: skip
    app.start_monitor(float(os.environ.get("PORTAINER_STANDIN_INIT_TIMEOUT", "300")))

    handler = type("Handler", (ServerHandler,), {"app": app})
    if not args.http_disabled:
        serve(parse_bind(args.bind), handler, None)
        log("INF", "starting HTTP server", bind_address=args.bind)
    serve((args.tunnel_addr, int(args.tunnel_port)), TunnelHandler, None)
    serve(parse_bind(args.bind_https), handler, server_context(cert, key))
    log("INF", "starting HTTPS server", bind_address=args.bind_https)
    wait_for_signal()
    return 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "portainer-standin"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log("DBG", "request", client=self.client_address[0], line=format % args)

    def send(self, status: int, body: object = None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, status: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class TunnelHandler(Handler):
    """Port 8000: Portainer's Edge tunnel (chisel) is not implemented."""

    def do_GET(self) -> None:
        self.send_text(404, "404 page not found\n")

    do_POST = do_GET


class ServerHandler(Handler):
    app: Portainer

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def do_PUT(self) -> None:
        self.route("PUT")

    def do_DELETE(self) -> None:
        self.route("DELETE")

    def route(self, method: str) -> None:
        url = urlsplit(self.path)
        path, app = url.path, self.app
        if app.disabled and self.path.startswith("/api") and self.path not in EXEMPT:
            msg = "Administrator initialization timeout"
            self.send(303, error_body(msg), {"redirect-reason": "AdminInitTimeout"})
            return
        if not path.startswith("/api/"):
            if method == "GET":
                self.send_text(200, "Portainer stand-in: no web UI, API only.\n")
            else:
                self.send_text(405, "")
            return
        routes = {
            "/api/system/status": {"GET": self.status},
            "/api/status": {"GET": self.status},
            "/api/users/admin/check": {"GET": self.admin_check},
            "/api/users/admin/init": {"POST": self.admin_init},
            "/api/auth": {"POST": self.authenticate},
            "/api/registries": {"GET": self.registry_list, "POST": self.registry_create},
            "/api/endpoints": {"GET": self.endpoint_list},
        }
        arg: int | None = None
        if path.startswith("/api/registries/") and path.count("/") == 3:
            tail = path.rsplit("/", 1)[1]
            if not tail.isdigit():
                self.send(400, error_body("Invalid registry identifier route variable",
                                          "Invalid syntax"))  # fmt: skip
                return
            arg = int(tail)
            handlers = {"GET": self.registry_inspect, "DELETE": self.registry_delete}
        else:
            handlers = routes.get(path)
        if handlers is None:
            self.send_text(404, "404 page not found\n")
            return
        if method not in handlers:
            self.send_text(405, "")
            return
        try:
            if arg is None:
                handlers[method]()
            else:
                handlers[method](arg)
        except BrokenPipeError:
            pass

    def payload(self) -> dict | None:
        """request.DecodeAndValidateJSONPayload's decoding half: 400 when not a JSON object."""
        try:
            data = json.loads(self.read_body() or b"null")
            if not isinstance(data, dict):
                raise ValueError("json: cannot unmarshal into a payload object")
        except ValueError as exc:
            self.send(400, error_body("Invalid request payload", str(exc)))
            return None
        return data

    def claims(self, admin_only: bool = True) -> dict | None:
        """The bouncer: a JWT from ?token=, the cookie or ``Authorization: Bearer``."""
        app = self.app
        token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        cookie = ""
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "portainer_api_key":
                cookie = value
        header = self.headers.get("Authorization")
        for candidate in (cookie, token or (header.removeprefix("Bearer ") if header else "")):
            if not candidate:
                continue
            claims = app.tokens.verify(candidate)
            if claims is None:
                self.send(401, error_body("Invalid JWT token", "Unauthorized"))
                return None
            if app.state.user(uid=claims["id"]) is None:
                self.send(401, error_body("An authorization token is invalid", "Unauthorized"))
                return None
            if admin_only and claims["role"] != ADMIN_ROLE:
                self.send(403, error_body("Access denied", "Unauthorized"))
                return None
            return claims
        self.send(401, error_body("A valid authorization token is missing", "Unauthorized"))
        return None

    # -- public routes -------------------------------------------------------------------

    def status(self) -> None:
        self.send(200, {"Version": VERSION, "InstanceID": self.app.state.doc["InstanceID"]})

    def admin_check(self) -> None:
        if self.app.state.admins():
            self.send(204)
        else:
            self.send(404, error_body("No administrator account found inside the database",
                                      "object not found inside the database"))  # fmt: skip

    def admin_init(self) -> None:
        app = self.app
        data = self.payload()
        if data is None:
            return
        username, password = str(data.get("Username") or ""), str(data.get("Password") or "")
        if not username or " " in username:
            self.send(400, error_body("Invalid request payload",
                                      "Invalid username. Must not contain any whitespace"))  # fmt: skip
            return
        if not password:
            self.send(400, error_body("Invalid request payload", "Invalid password"))
            return
        with app.state.lock:
            if app.setup_token is not None and not app.state.admins():
                given = self.headers.get("X-Setup-Token") or ""
                if not hmac.compare_digest(given.encode(), app.setup_token.encode()):
                    self.send(403, error_body("Invalid setup token"))
                    return
            if app.state.admins():
                self.send(409, error_body("Unable to create administrator user",
                                          "An administrator user already exists"))  # fmt: skip
                return
            if len(password) < MIN_PASSWORD:
                self.send(400, error_body("Password does not meet the requirements"))
                return
            user = app.state.add_user(username, hash_password(password))
            app.setup_token = None
        app.admin_created.set()
        self.send(200, user)

    def authenticate(self) -> None:
        data = self.payload()
        if data is None:
            return
        username, password = str(data.get("Username") or ""), str(data.get("Password") or "")
        for bad, why in ((not username, "Invalid username"), (not password, "Invalid password")):
            if bad:
                self.send(400, error_body("Invalid request payload", why))
                return
        user = self.app.state.user(name=username)
        if user is None or not check_password(user["Password"], password):
            self.send(422, error_body("Invalid credentials", "Unauthorized"))
            return
        token, exp = self.app.tokens.issue(user)
        expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(exp))
        cookie = f"portainer_api_key={token}; Path=/; Expires={expires}; HttpOnly; SameSite=Strict"
        self.send(200, {"jwt": token}, {"Set-Cookie": cookie})

    # -- administrator routes ------------------------------------------------------------

    def endpoint_list(self) -> None:
        if self.claims() is not None:
            self.send(200, self.app.state.doc["Endpoints"])

    def registry_list(self) -> None:
        if self.claims() is not None:
            # registry_list.go returns the stored registries as they are, password included.
            self.send(200, self.app.state.doc["Registries"])

    def registry_create(self) -> None:
        if self.claims() is None:
            return
        data = self.payload()
        if data is None:
            return
        name, url = str(data.get("Name") or ""), str(data.get("URL") or "")
        rtype, auth = data.get("Type"), bool(data.get("Authentication"))
        username, password = str(data.get("Username") or ""), str(data.get("Password") or "")
        why = None
        if not name:
            why = "invalid registry name"
        elif not url:
            why = "invalid registry URL"
        elif auth and not (username and password):
            why = ("invalid credentials. Username and password must be specified when "
                   "authentication is enabled")  # fmt: skip
        elif rtype not in REGISTRY_TYPES:
            why = ("invalid registry type. Valid values are: 1 (Quay.io), 2 (Azure container "
                   "registry), 3 (custom registry), 4 (Gitlab registry), 5 (ProGet registry), "
                   "6 (DockerHub), 7 (ECR)")  # fmt: skip
        elif rtype == 5 and not data.get("BaseURL"):
            why = "BaseURL is required for registry type 5 (ProGet)"
        if why:
            self.send(400, error_body("Invalid request payload", why))
            return
        with self.app.state.lock:
            stored = self.app.state.doc["Registries"]
            for r in stored:
                if r["Name"] == name:
                    self.send(409, error_body("Another registry with the same name already exists",
                                              "a registry is already defined with this name"))  # fmt: skip
                    return
                same_creds = r["Authentication"] == auth and (not auth or r["Username"] == username)
                if r["URL"] == url and same_creds:
                    self.send(409, error_body(
                        "Another registry with the same URL and credentials already exists",
                        "a registry is already defined for this URL and credentials"))  # fmt: skip
                    return
            registry = {
                "Id": max((r["Id"] for r in stored), default=0) + 1, "Type": rtype,
                "Name": name, "URL": url, "BaseURL": str(data.get("BaseURL") or ""),
                "Authentication": auth, "Username": username, "Password": password,
                "ManagementConfiguration": {
                    "Type": rtype, "Authentication": auth, "Username": username,
                    "Password": password, "TLSConfig": {"TLS": False, "TLSSkipVerify": False},
                    "Ecr": {"Region": ""},
                },
                "Gitlab": data.get("Gitlab") or {"ProjectId": 0, "InstanceURL": "", "ProjectPath": ""},
                "Quay": data.get("Quay") or {"UseOrganisation": False, "OrganisationName": ""},
                "Ecr": data.get("Ecr") or {"Region": ""},
                "RegistryAccesses": {}, "UserAccessPolicies": None, "TeamAccessPolicies": None,
                "AuthorizedUsers": None, "AuthorizedTeams": None,
            }  # fmt: skip
            stored.append(registry)
            self.app.state.save()
        self.send(200, {**registry, "Password": "", "ManagementConfiguration": None,
                        "RegistryAccesses": None})  # fmt: skip

    def registry_inspect(self, rid: int) -> None:
        if self.claims(admin_only=False) is None:
            return
        for r in self.app.state.doc["Registries"]:
            if r["Id"] == rid:
                self.send(200, {**r, "Password": "", "ManagementConfiguration": None})
                return
        self.send(404, error_body(
            "Unable to find a registry with the specified identifier inside the database",
            "object not found inside the database"))  # fmt: skip

    def registry_delete(self, rid: int) -> None:
        if self.claims() is None:
            return
        with self.app.state.lock:
            stored = self.app.state.doc["Registries"]
            keep = [r for r in stored if r["Id"] != rid]
            if len(keep) == len(stored):
                # Portainer 2.23 fails here with a 500 (it reads the missing registry's name).
                self.send(500, error_body("Unable to load registry from the database",
                                          "object not found inside the database"))  # fmt: skip
                return
            self.app.state.doc["Registries"] = keep
            self.app.state.save()
        self.send(204)


# -- the agent -----------------------------------------------------------------------------


class AgentHandler(Handler):
    def route(self) -> None:
        self.read_body()
        headers = {
            "Portainer-Agent": VERSION,
            "Portainer-Agent-API-Version": AGENT_API_VERSION,
            "Portainer-Agent-Platform": PLATFORM_DOCKER,
        }
        if self.command == "GET" and urlsplit(self.path).path.startswith("/ping"):
            self.send(204, None, headers)
            return
        # Everything else passes the notary first: Portainer signs its requests.
        self.send(403, error_body("Missing request signature headers", "Unauthorized"), headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = route


def main_agent(argv: list[str]) -> int:
    if argv:
        print(f"agent: unexpected arguments {argv}", file=sys.stderr)
        return 2
    port = int(os.environ.get("AGENT_PORT", "9001"))
    log(
        "INF",
        "agent stand-in",
        version=VERSION,
        cluster_addr=os.environ.get("AGENT_CLUSTER_ADDR", ""),
    )
    workdir = os.environ.get("AGENT_CERT_DIR", "/tmp/agent")
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    make_certificate(cert, key, os.uname().nodename)
    serve(("", port), AgentHandler, server_context(cert, key))
    log("INF", "starting Agent API server", server_port=port, use_tls=True, api_version=VERSION)
    wait_for_signal()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP)
    if sys.argv[1:2] == ["agent"]:
        sys.exit(main_agent(sys.argv[2:]))
    sys.exit(main_server(sys.argv[1:]))
