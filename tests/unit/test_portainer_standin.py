"""The lab's Portainer stand-in (tests/lab/portainer-standin/server.py) on loopback, without
Docker: the status codes and bodies Portainer's source gives, and runbook_lib.portainer's
own steps talking to it through the probe's real TLS and HTTP code."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbook_lib import portainer
from runbook_lib.context import Runbook
from runbook_lib.hosts import Host
from runbook_lib.params import Params
from runbook_lib.steps import StepFailed

SERVER = Path(__file__).parents[1] / "lab" / "portainer-standin" / "server.py"
PASSWORD = "correct-horse-battery"
ADMIN = {"Username": "admin", "Password": PASSWORD}
REGISTRY = {
    "Name": "swarm-registry",
    "Type": 3,
    "URL": "docker.example.com:443",
    "Authentication": True,
    "Username": "admin",
    "Password": "registry-password",
}

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    """server.py as a subprocess on loopback ports, with its data in a folder."""

    def __init__(self, tmp: Path, *args: str, agent_port: int | None = None, **env: str):
        self.data, self.args, self.env = tmp / "data", list(args), env
        self.https, self.http, self.tunnel = free_port(), free_port(), free_port()
        if agent_port is not None:
            self.args += ["-H", f"tcp://127.0.0.1:{agent_port}", "--tlsskipverify"]
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, **env: str) -> StandIn:
        argv = [sys.executable, str(SERVER), "--data", str(self.data)]
        argv += ["--bind", f"127.0.0.1:{self.http}", "--bind-https", f"127.0.0.1:{self.https}"]
        argv += ["--tunnel-addr", "127.0.0.1", "--tunnel-port", str(self.tunnel), *self.args]
        environ = {**os.environ, **self.env, **env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environ)
        wait_for(self.https)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self, **env: str) -> None:
        self.stop()
        self.start(**env)

    def request(self, method: str, path: str, body: object = None, headers=None, tls=True):
        """(status, headers, JSON or text body)."""
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.https, timeout=10, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        if resp.getheader("Content-Type") == "application/json":
            return resp.status, resp.headers, json.loads(raw)
        return resp.status, resp.headers, raw.decode()

    def jwt(self) -> str:
        status, _, body = self.request("POST", "/api/auth", ADMIN)
        assert status == 200
        return body["jwt"]


def wait_for(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def agent(tmp_path):
    port = free_port()
    env = {**os.environ, "AGENT_PORT": str(port), "AGENT_CERT_DIR": str(tmp_path / "agent")}
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "agent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def standin(tmp_path, agent):
    s = StandIn(tmp_path, agent_port=agent).start()
    yield s
    s.stop()


def error(message: str, details: str | None = None) -> dict:
    return {"message": message, "details": details or message}


# -- the API, as Portainer's source says -------------------------------------------------------


def test_status_and_admin_check_before_an_administrator(standin):
    status, _, body = standin.request("GET", "/api/system/status")
    assert status == 200 and body["Version"] == "2.23.0" and body["InstanceID"]
    assert standin.request("GET", "/api/status")[2] == body  # the deprecated route
    assert standin.request("GET", "/api/system/status", tls=False)[2] == body  # plain :9000
    status, _, body = standin.request("GET", "/api/users/admin/check")
    assert (status, body) == (
        404,
        error(
            "No administrator account found inside the database",
            "Object not found inside the database",
        ),
    )


@pytest.mark.parametrize(
    ("payload", "status", "body"),
    [
        ({"Username": "admin", "Password": "short-pass1"}, 400,
         error("Password does not meet the requirements")),
        ({"Username": "ad min", "Password": PASSWORD}, 400,
         error("Invalid request payload", "Invalid username. Must not contain any whitespace")),
        ({"Username": "admin"}, 400, error("Invalid request payload", "Invalid password")),
    ],
)  # fmt: skip
def test_admin_init_refusals(standin, payload, status, body):
    assert standin.request("POST", "/api/users/admin/init", payload)[::2] == (status, body)
    assert standin.request("GET", "/api/users/admin/check")[0] == 404


def test_admin_init_then_409_then_auth(standin):
    status, _, user = standin.request("POST", "/api/users/admin/init", ADMIN)
    assert status == 200
    assert (user["Id"], user["Username"], user["Role"]) == (1, "admin", 1)
    assert PASSWORD not in json.dumps(user)
    assert standin.request("GET", "/api/users/admin/check")[0] == 204
    status, _, body = standin.request("POST", "/api/users/admin/init", ADMIN)
    assert (status, body) == (
        409,
        error("Unable to create administrator user", "An administrator user already exists"),
    )
    wrong = {"Username": "admin", "Password": "wrong-horse-battery"}
    assert standin.request("POST", "/api/auth", wrong)[::2] == (
        422,
        error("Invalid credentials", "Unauthorized"),
    )
    status, headers, body = standin.request("POST", "/api/auth", ADMIN)
    assert status == 200 and list(body) == ["jwt"] and body["jwt"].count(".") == 2
    assert headers["Set-Cookie"].startswith(f"portainer_api_key={body['jwt']}; Path=/;")


def test_registries_need_the_jwt_and_refuse_duplicates(standin):
    standin.request("POST", "/api/users/admin/init", ADMIN)
    assert standin.request("GET", "/api/registries")[::2] == (
        401,
        error("A valid authorization token is missing", "Unauthorized"),
    )
    assert standin.request("GET", "/api/registries", headers={"Authorization": "Bearer x.y.z"})[
        ::2
    ] == (401, error("Invalid JWT token", "Unauthorized"))
    bearer = {"Authorization": f"Bearer {standin.jwt()}"}
    status, _, created = standin.request("POST", "/api/registries", REGISTRY, bearer)
    assert status == 200
    assert (created["Id"], created["Name"], created["URL"]) == (
        1,
        REGISTRY["Name"],
        REGISTRY["URL"],
    )
    assert (created["Type"], created["Authentication"], created["Username"]) == (3, True, "admin")
    assert created["Password"] == "" and created["ManagementConfiguration"] is None
    status, _, body = standin.request("POST", "/api/registries", REGISTRY, bearer)
    assert (status, body) == (
        409,
        error(
            "Another registry with the same name already exists",
            "A registry is already defined with this name",
        ),
    )
    other_name = {**REGISTRY, "Name": "another", "Password": "other"}
    status, _, body = standin.request("POST", "/api/registries", other_name, bearer)
    assert (status, body["message"]) == (
        409,
        "Another registry with the same URL and credentials already exists",
    )
    status, _, listed = standin.request("GET", "/api/registries", headers=bearer)
    assert status == 200 and [r["Name"] for r in listed] == [REGISTRY["Name"]]
    status, _, one = standin.request("GET", "/api/registries/1", headers=bearer)
    assert status == 200 and one["Password"] == "" and one["URL"] == REGISTRY["URL"]
    bad = {**REGISTRY, "Name": "x", "URL": "y", "Password": ""}
    status, _, body = standin.request("POST", "/api/registries", bad, bearer)
    assert status == 400 and body["details"].startswith("Invalid credentials. Username and")


def test_the_agent_is_pinged_once_an_administrator_exists(standin, agent):
    standin.request("POST", "/api/users/admin/init", ADMIN)
    bearer = {"Authorization": f"Bearer {standin.jwt()}"}
    deadline = time.monotonic() + 10
    while not (endpoints := standin.request("GET", "/api/endpoints", headers=bearer)[2]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (primary,) = endpoints
    assert (primary["Name"], primary["URL"], primary["Type"]) == (
        "primary",
        f"tcp://127.0.0.1:{agent}",
        2,  # AgentOnDockerEnvironment: the answer had a Portainer-Agent header
    )


def test_agent_ping(agent):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for path, status in (("/ping", 204), ("/_ping", 403), ("/v2/containers/json", 403)):
        conn = http.client.HTTPSConnection("127.0.0.1", agent, timeout=10, context=ctx)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == status
        assert resp.getheader("Portainer-Agent") == "2.23.0"
        assert resp.getheader("Portainer-Agent-API-Version") == "2"
        if status == 403:
            assert json.loads(body) == error("Missing request signature headers", "Unauthorized")


def test_no_agent_is_fatal_after_the_administrator_is_set(tmp_path):
    s = StandIn(tmp_path, agent_port=free_port()).start()
    try:
        assert s.request("POST", "/api/users/admin/init", ADMIN)[0] == 200
        assert s.proc.wait(10) == 1
        assert "failed initializing environment" in s.log.read_text()
        s.start()  # the administrator was kept: no second ping, the server stays up
        assert s.request("GET", "/api/users/admin/check")[0] == 204
        time.sleep(0.5)
        assert s.proc.poll() is None
    finally:
        s.stop()


def test_state_survives_a_restart_and_tokens_do_not(standin):
    standin.request("POST", "/api/users/admin/init", ADMIN)
    token = standin.jwt()
    bearer = {"Authorization": f"Bearer {token}"}
    standin.request("POST", "/api/registries", REGISTRY, bearer)
    instance = standin.request("GET", "/api/system/status")[2]["InstanceID"]
    standin.restart()
    assert standin.request("GET", "/api/system/status")[2]["InstanceID"] == instance
    assert standin.request("GET", "/api/users/admin/check")[0] == 204
    assert standin.request("GET", "/api/registries", headers=bearer)[0] == 401
    listed = standin.request("GET", "/api/registries", headers={"Cookie": ""}, tls=True)
    assert listed[0] == 401
    bearer = {"Authorization": f"Bearer {standin.jwt()}"}
    assert [r["Name"] for r in standin.request("GET", "/api/registries", headers=bearer)[2]] == [
        REGISTRY["Name"]
    ]
    assert "generating self signed" in standin.log.read_text()
    assert standin.log.read_text().count("generating self signed") == 1  # kept in /data/certs


def test_initialisation_window(tmp_path):
    s = StandIn(tmp_path, PORTAINER_STANDIN_INIT_TIMEOUT="0.5").start()
    try:
        time.sleep(0.8)
        status, headers, body = s.request("GET", "/api/system/status")
        assert (status, body) == (303, error("Administrator initialization timeout"))
        assert headers["redirect-reason"] == "AdminInitTimeout"
        assert s.request("GET", "/api/status")[0] == 200  # exempt, as in admin_monitor.go
        assert s.request("POST", "/api/users/admin/init", ADMIN)[0] == 303
        assert s.request("GET", "/api/users/admin/check")[0] == 303
        assert "timed out for security purposes" in s.log.read_text()
        s.restart(PORTAINER_STANDIN_INIT_TIMEOUT="300")
        assert s.request("GET", "/api/users/admin/check")[0] == 404
        assert s.request("POST", "/api/users/admin/init", ADMIN)[0] == 200
    finally:
        s.stop()


def test_admin_password_file(tmp_path):
    secret = tmp_path / "portainer_admin"
    secret.write_text(PASSWORD + "\n")
    s = StandIn(tmp_path, "--admin-password-file", str(secret)).start()
    try:
        assert s.request("GET", "/api/users/admin/check")[0] == 204
        assert s.request("POST", "/api/auth", ADMIN)[0] == 200  # the newline is not part of it
        assert "created admin user with the given password." in s.log.read_text()
        s.restart()
        assert "skipping admin password related flags" in s.log.read_text()
    finally:
        s.stop()
    both = [sys.executable, str(SERVER), "--admin-password", "x", "--admin-password-file", "y"]
    result = subprocess.run(both, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Cannot use --admin-password with --admin-password-file" in result.stderr


def test_setup_token(tmp_path):
    s = StandIn(tmp_path, PORTAINER_STANDIN_SETUP_TOKEN="1").start()
    try:
        (line,) = [x for x in s.log.read_text().splitlines() if "setup token" in x]
        token = line.rsplit("token=", 1)[1]
        assert s.request("POST", "/api/users/admin/init", ADMIN)[::2] == (
            403,
            error("Invalid setup token"),
        )
        wrong = {"X-Setup-Token": token + "x"}
        assert s.request("POST", "/api/users/admin/init", ADMIN, wrong)[0] == 403
        right = {"X-Setup-Token": token}
        assert s.request("POST", "/api/users/admin/init", ADMIN, right)[0] == 200
        assert s.request("POST", "/api/users/admin/init", ADMIN, right)[0] == 409
    finally:
        s.stop()


# -- runbook_lib.portainer's own steps against the stand-in -----------------------------------


class _Transport:
    def open_channel(self, kind, dest, src, timeout=None):
        assert kind == "direct-tcpip"
        return socket.create_connection(dest, timeout=timeout)

    def is_active(self) -> bool:
        return True


class _Client:
    def get_transport(self) -> _Transport:
        return _Transport()


class LoopbackHost(Host):
    """A host whose SSH port forward is a plain loopback connection, so that probe.https_get
    runs its real TLS and HTTP code against the stand-in; restarting the Portainer service
    restarts the stand-in's process."""

    def __init__(self, standin: StandIn):
        super().__init__("root")
        self.name, self.standin, self.commands = "loopback", standin, []

    def connect(self) -> _Client:
        return _Client()

    def discard(self, client) -> None:
        pass

    def _exec(self, argv, stdin, timeout, *, on_line=None):
        self.commands.append(list(argv))
        if list(argv[-5:]) == ["docker", "service", "update", "--force", portainer.SERVER]:
            self.standin.restart(PORTAINER_STANDIN_INIT_TIMEOUT="300")
            return 0, b"", b""
        if list(argv[-6:-2]) == ["service", "ls", "--filter", f"name={portainer.AGENT}"]:
            return 0, b"portainer_agent 1/1\n", b""  # the one agent of a one-node swarm
        if list(argv[-5:-2]) == ["service", "inspect", portainer.SERVER]:
            return 0, b"\n", b""  # no update under way
        if list(argv[-3:]) == ["--filter", "desired-state=running", portainer.SERVER]:
            return 0, b"task1\n", b""
        if list(argv[-4:]) == ["service", "logs", "--raw", "task1"]:
            return 0, self.standin.log.read_bytes(), b""
        return 127, b"", f"not in this test: {argv}".encode()


def runbook(standin: StandIn, monkeypatch) -> Runbook:
    monkeypatch.setenv("PORTAINER_PASSWORD", PASSWORD)
    p = Params(
        host="127.0.0.1",
        registry_host="docker.example.com",
        registry_users={"admin": "env:REGISTRY_PASSWORD"},
        portainer_enabled=True,
        portainer_port=standin.https,
        portainer_admin_password="env:PORTAINER_PASSWORD",
    )
    return Runbook(p, "09-portainer", host=LoopbackHost(standin))


def reads_only(host: LoopbackHost) -> bool:
    """The host was only asked about the agents (never changed)."""
    reads = ("ls", "inspect", "ps", "logs")
    return all(argv[argv.index("service") + 1] in reads for argv in host.commands)


def test_runbook_waits_sets_the_administrator_then_changes_nothing(standin, monkeypatch):
    rb = runbook(standin, monkeypatch)
    waited = portainer.wait_ready(rb, timeout=10)
    assert waited.status == "verified" and "(Portainer 2.23.0); its agent runs" in waited.reason
    first = portainer.admin(rb)
    assert (first.status, first.reason) == ("changed", "administrator 'admin' set over the API")
    assert first.warnings  # it did not come from the secret: said
    assert standin.request("POST", "/api/auth", ADMIN)[0] == 200  # the runbook's password
    second = portainer.admin(rb)
    assert second.status == "ok"
    assert second.reason == "'admin' logs in with portainer_admin_password"
    assert reads_only(rb.host)


def test_runbook_sets_the_administrator_with_the_setup_token_from_the_log(tmp_path, monkeypatch):
    s = StandIn(tmp_path, PORTAINER_STANDIN_SETUP_TOKEN="1").start()
    try:
        rb = runbook(s, monkeypatch)
        assert portainer.admin(rb).status == "changed"
        assert s.request("POST", "/api/auth", ADMIN)[0] == 200
        assert rb.host.commands[-1][-4:] == ["service", "logs", "--raw", "task1"]
    finally:
        s.stop()


def test_runbook_restarts_a_portainer_that_timed_out(tmp_path, monkeypatch):
    s = StandIn(tmp_path, PORTAINER_STANDIN_INIT_TIMEOUT="0.5").start()
    try:
        time.sleep(0.8)
        rb = runbook(s, monkeypatch)
        waited = portainer.wait_ready(rb, timeout=10)
        assert waited.status == "verified" and "disabled itself" in waited.reason
        result = portainer.admin(rb)
        assert result.status == "changed"
        assert result.reason == (
            "administrator 'admin' set over the API after restarting the disabled service"
        )
        restart = ["docker", "service", "update", "--force", portainer.SERVER]
        assert restart in [argv[-5:] for argv in rb.host.commands]
        assert s.request("GET", "/api/users/admin/check")[0] == 204
    finally:
        s.stop()


def test_runbook_refuses_an_administrator_it_cannot_log_in_as(standin, monkeypatch):
    rb = runbook(standin, monkeypatch)
    other = {"Username": "admin", "Password": "someone-elses-password"}
    assert standin.request("POST", "/api/users/admin/init", other)[0] == 200
    with pytest.raises(StepFailed, match="refused portainer_admin_password for 'admin'"):
        portainer.admin(rb)
    assert reads_only(rb.host)


def test_the_secret_sets_the_administrator_and_the_registry_is_registered_once(
    tmp_path, monkeypatch
):
    secret = tmp_path / "portainer_admin_password"
    secret.write_text(PASSWORD + "\n")
    s = StandIn(tmp_path, "--admin-password-file", str(secret)).start()
    try:
        monkeypatch.setenv("REGISTRY_PASSWORD", "registry-password-1")
        rb = runbook(s, monkeypatch)
        assert portainer.admin(rb).status == "ok"  # set at start, from the file
        first = portainer.registry(rb)
        assert first.status == "changed"
        assert first.reason == (
            "registered docker.example.com (docker.example.com:5000, user 'admin')"
        )
        jwt = s.request("POST", "/api/auth", ADMIN)[2]["jwt"]
        bearer = {"Authorization": f"Bearer {jwt}"}
        (stored,) = s.request("GET", "/api/registries", None, bearer)[2]
        assert (stored["Type"], stored["URL"], stored["Authentication"]) == (
            3,
            "docker.example.com:5000",
            True,
        )
        assert portainer.registry(rb).status == "ok"
        # A new registry password: registered again, with it.
        monkeypatch.setenv("REGISTRY_PASSWORD", "registry-password-2")
        rb = runbook(s, monkeypatch)  # a new run: secrets are read once a run
        again = portainer.registry(rb)
        assert again.status == "changed" and again.reason.endswith("with the current settings")
        (stored,) = s.request("GET", "/api/registries", None, bearer)[2]
        assert stored["Password"] == "registry-password-2"
        assert portainer.registry(rb).status == "ok"
        assert reads_only(rb.host)
    finally:
        s.stop()
