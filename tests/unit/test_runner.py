"""The run driver's pure parts and its refusals before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_lib import runner
from runbook_lib.cli import main
from runbook_lib.errors import ParameterError, SecretError

NBS = [Path(f"{n}-x.ipynb") for n in ("01", "02", "03", "04", "05")]


def names(paths):
    return [p.name[:2] for p in paths]


def test_select():
    assert names(runner.select(NBS, None, None)) == ["01", "02", "03", "04", "05"]
    assert names(runner.select(NBS, "3", None)) == ["03", "04", "05"]
    assert names(runner.select(NBS, None, ["05", "1"])) == ["01", "05"]
    with pytest.raises(ParameterError, match="no such notebook"):
        runner.select(NBS, "9", None)


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("host: 192.0.2.10\nregistry_host: r.example.com\nregistry_prot: 5000\n")
    with pytest.raises(ParameterError, match="registry_prot"):
        runner.run(f, out_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_unresolvable_secret_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("RB_UNSET_FOR_TEST", raising=False)
    f = tmp_path / "p.yaml"
    f.write_text(
        "host: 192.0.2.10\nregistry_host: r.example.com\n"
        "registry_users: {admin: env:RB_UNSET_FOR_TEST}\n"
    )
    with pytest.raises(SecretError, match="RB_UNSET_FOR_TEST"):
        runner.run(f, out_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_cli_exit_code_and_message(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("host: [not yaml\n")
    assert main(["run", str(f), "--out", str(tmp_path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_a_short_registry_password_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RB_SHORT_FOR_TEST", "qz7k")
    f = tmp_path / "p.yaml"
    f.write_text(
        "host: 192.0.2.10\nregistry_host: r.example.com\n"
        "registry_users: {admin: env:RB_SHORT_FOR_TEST}\n"
    )
    with pytest.raises(ParameterError, match="registry_users") as info:
        runner.run(f, out_root=tmp_path / "runs")
    assert "qz7k" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_runs_within_one_second_get_their_own_folders(tmp_path):
    made = [runner.new_folder(tmp_path / "runs", "20261125T120000Z-host") for _ in range(3)]
    assert [p.name for p in made] == [
        "20261125T120000Z-host",
        "20261125T120000Z-host-2",
        "20261125T120000Z-host-3",
    ]
    assert all(p.is_dir() for p in made)
