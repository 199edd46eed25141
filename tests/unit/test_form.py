"""The JupyterLab parameters: documentation, the saved choice, the form's checks, headless."""

from __future__ import annotations

import stat

import pytest

from runbook_lib import form
from runbook_lib.params import Params


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    form._TYPED.clear()
    return tmp_path


def test_every_field_is_documented():
    docs = form.field_docs()
    undocumented = [n for n in Params.model_fields if not docs.get(n, ("", ""))[1]]
    # Some fields' line in example.yaml is self-explanatory and has no comment.
    assert set(undocumented) <= {
        "ssh_port",
        "registry_port",
        "portainer_enabled",
        "portainer_image",
        "portainer_agent_image",
        "portainer_port",
        "check_mode",
    }
    assert docs["host"][0] == "How to reach the host"
    assert "apt" not in docs["docker_source"][1] or "docker-ce" in docs["docker_source"][1]


def test_choice_is_owner_only_and_holds_references(config):
    secret = form._typed("sudo_password", "typed-value")
    path = form.save_choice("/x/lab.yaml", {"host": "h", "sudo_password": secret})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "typed-value" not in path.read_text()
    assert form.load_choice()["values"]["sudo_password"] == "prompt"


def test_chosen_values_use_typed_secrets_in_this_kernel(config, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("host: 192.0.2.10\nregistry_host: 192.0.2.10\nregistry_users: {a: prompt}\n")
    form._typed("sudo_password", "typed-value")
    form.save_choice(str(f), {"sudo_password": "prompt", "ssh_user": "deploy"})
    values, where = form.chosen_values()
    assert values["ssh_user"] == "deploy" and values["host"] == "192.0.2.10"
    assert values["sudo_password"].reveal() == "typed-value"
    assert "p.yaml" in where


def test_set_in_cell_sees_only_non_defaults():
    ns = {"host": None, "registry_users": {}, "ssh_port": 22, "ssh_user": "deploy", "x": 1}
    assert form.set_in_cell(ns) == {"ssh_user": "deploy"}


def test_headless_takes_the_cell_and_shows_nothing(config, capsys):
    form.save_choice(None, {"host": "192.0.2.10"})
    with pytest.raises(Exception, match="host"):
        form.parameters({"host": None})  # the saved choice is for JupyterLab only
    assert capsys.readouterr().out == ""


def test_form_checks_every_field(config, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    f = form.Form({})
    _, problems = f.check()
    assert set(problems) == {"host", "registry_host", "registry_users"}
    assert problems["host"].startswith("required")
    f.inputs["host"].value = "192.0.2.10"
    f.inputs["registry_host"].value = "not a host!"
    f.inputs["registry_users"].value = "admin: env:NO_SUCH_VAR"
    f.inputs["ssh_port"].value = 70000
    _, problems = f.check()
    assert set(problems) == {"registry_host", "registry_users", "ssh_port"}
    assert "NO_SUCH_VAR" in problems["registry_users"]
    f.inputs["registry_host"].value = "registry.example.com"
    f.inputs["ssh_port"].value = 22
    f.inputs["registry_users"].value = "admin: prompt"
    f.passwords["sudo_password"].value = "typed-value"
    p, problems = f.check()
    assert not problems and p.sudo_password.reveal() == "typed-value"


def test_loading_a_file_fills_the_fields():
    f = form.Form({})
    f.load_file("parameters/example.yaml")
    assert f.inputs["host"].value == "docker.example.com"
    assert f.inputs["registry_users"].value == "admin: env:REGISTRY_PASSWORD"
    assert f.inputs["docker_source"].value == "docker"
