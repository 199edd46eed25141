"""Notebook 09 for real on the local lab: Portainer's stack deployed through the swarm, its
administrator set from the swarm secret, the agent answering the server, and the registry
registered in Portainer; a second run changes nothing.

No Portainer image can be pulled here: the images are the lab's stand-in
(tests/lab/portainer-standin/), which answers as Portainer's source says. What runs for
real is everything around it: the secret, the stack file, ``docker stack deploy``, the
overlay network and ``tasks.agent``, the published port, the waits, and the API calls.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from runbook_lib import runner
from tests.conftest import CLIENT, ROOT, papermill_alone
from tests.integration.test_faults import PARAMS, assert_clean, run, sh

pytestmark = pytest.mark.lab
PASSWORD_FILE = CLIENT / "portainer-admin.password"
PORT = 9443


def api(method: str, path: str, body: object = None, token: str = "") -> tuple[int, object]:
    """Portainer's API as a browser on this machine reaches it (its certificate is its own)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", PORT, context=context, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        answer = conn.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data.strip().startswith((b"{", b"[")) else data
    finally:
        conn.close()


def login() -> str:
    credentials = {"Username": "admin", "Password": PASSWORD_FILE.read_text()}
    status, body = api("POST", "/api/auth", credentials)
    assert status == 200, body
    return body["jwt"]


def steps(summary: runner.RunSummary, notebook: str) -> dict[str, str]:
    (record,) = [n for n in summary.notebooks if n.name == notebook]
    report = runner.read_report(Path(summary.folder) / record.output)
    return {s["name"]: s["status"] for s in report["steps"]}


@pytest.fixture(scope="module")
def portainer_runs(lab, tmp_path_factory):
    """The lab reset, then two whole runs with Portainer enabled."""
    subprocess.run(["bash", str(ROOT / "tests/lab/reset.sh")], check=True, capture_output=True)
    tmp = tmp_path_factory.mktemp("portainer")
    params = tmp / "portainer.yaml"
    values = yaml.safe_load(PARAMS.read_text())
    values |= {"portainer_enabled": True, "portainer_admin_password": f"file:{PASSWORD_FILE}"}
    params.write_text(yaml.safe_dump(values))
    first = run(tmp / "first", params)
    assert_clean(first)
    second = run(tmp / "second", params)
    assert_clean(second)
    yield {"params": params, "first": first, "second": second, "tmp": tmp}
    # Portainer is not part of the other lab tests' host: take it away again.
    sh(
        "docker stack rm portainer >/dev/null; "
        "for i in $(seq 60); do docker service ls -q --filter label=com.docker.stack.namespace=portainer "
        "| grep -q . || break; sleep 1; done; "
        "docker secret rm portainer_admin_password >/dev/null 2>&1 || true; "
        "for i in $(seq 30); do docker volume rm portainer_portainer_data >/dev/null 2>&1 && break; "
        "sleep 1; done; true"
    )


def test_first_run_deploys_portainer_sets_its_administrator_and_registers_the_registry(
    portainer_runs,
):
    assert steps(portainer_runs["first"], "09-portainer") == {
        "Portainer parameters": "verified",
        "Portainer administrator secret": "changed",
        "Portainer stack file": "changed",
        "Portainer services": "changed",
        "Portainer answers": "verified",
        # Set when the server started, from the secret: the step checks it logs in.
        "Portainer administrator": "ok",
        "Portainer reaches its agents": "verified",
        "Registry in Portainer": "changed",
    }
    token = login()
    status, registries = api("GET", "/api/registries", token=token)
    assert status == 200
    (registry,) = registries
    assert (registry["Name"], registry["URL"], registry["Type"]) == (
        "localhost",
        "localhost:5000",
        3,
    )
    assert (registry["Authentication"], registry["Username"]) == (True, "admin")
    # The server reached the agent at tasks.agent:9001 over the overlay network: its
    # environment is an agent environment (type 2).
    status, environments = api("GET", "/api/endpoints", token=token)
    assert status == 200 and [e["Type"] for e in environments] == [2]
    assert (
        sh("docker service ls --filter name=portainer_agent --format '{{.Replicas}}'").strip()
        == "1/1"
    )


def test_a_second_run_changes_nothing(portainer_runs):
    second = portainer_runs["second"]
    assert second.status == "ok" and second.counts.get("changed", 0) == 0
    assert set(steps(second, "09-portainer").values()) <= {"ok", "verified"}


def test_the_administrator_password_is_nowhere_but_in_the_secret(portainer_runs):
    password = PASSWORD_FILE.read_text()
    stack = Path("/home/docker/portainer-agent-stack.yml").read_text()
    assert "--admin-password-file /run/secrets/portainer_admin_password" in stack
    inspected = sh("docker service inspect portainer_portainer portainer_agent")
    records = [p.read_text() for p in portainer_runs["tmp"].rglob("*.ipynb")]
    records += [p.read_text() for p in portainer_runs["tmp"].rglob("*.json")]
    cmdlines = sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; true")
    for where, text in [("stack file", stack), ("service spec", inspected), ("commands", cmdlines)]:
        assert password not in text, where
    assert not [r for r in records if password in r]


def test_notebook_09_alone_under_papermill_changes_nothing(portainer_runs, tmp_path):
    report = papermill_alone("09-portainer", portainer_runs["params"], tmp_path / "09.ipynb")
    assert (report["status"], report["changed"]) == ("ok", 0)
