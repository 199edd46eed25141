"""The run driver's pure parts and its refusals before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook_lib import runner
from runbook_lib.cli import main
from runbook_lib.errors import ParameterError, SecretError
from tests.conftest import stand_in_notebook

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


@pytest.fixture
def listener():
    """A TCP port on loopback that counts who connects (nothing answers)."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.1)
        yield server


def _connections(server, seconds: float, first: bool = False) -> int:
    """How many connect within ``seconds`` (or, with ``first``, 1 as soon as one does)."""
    import time

    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end and not (first and count):
        try:
            server.accept()[0].close()
            count += 1
        except TimeoutError:
            pass
    return count


def _params(tmp_path, port: int, password: str, monkeypatch) -> Path:
    monkeypatch.setenv("RB_TEST_REGISTRY_PW", password)
    f = tmp_path / "p.yaml"
    f.write_text(
        f"host: 127.0.0.1\nssh_port: {port}\nregistry_host: registry.test\n"
        "registry_users: {admin: env:RB_TEST_REGISTRY_PW}\n"
    )
    return f


# Seconds a booted kernel is given to reach the host: it takes ~0.01 s once allowed.
GATE_WINDOW = 1.0


@pytest.fixture
def booted_first(monkeypatch, listener):
    """Have the run wait until its kernel has booted (and so started its preconnect thread)
    before it judges the parameters' secrets, and count who reaches the listener while the
    booted kernel waits: a refusal then comes late enough for a kernel without the gate to
    have reached the host (the kernel is killed when the run ends). The counts, one a run."""
    seen: list[int] = []
    kernels: list[runner.SharedKernel] = []

    class Watched(runner.SharedKernel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            kernels.append(self)

    judge = runner.resolve_secrets

    def judge_after_boot(p):
        kernels[-1].ready()
        seen.append(_connections(listener, GATE_WINDOW))
        judge(p)

    monkeypatch.setattr(runner, "SharedKernel", Watched)
    monkeypatch.setattr(runner, "resolve_secrets", judge_after_boot)
    return seen


def test_the_kernel_connects_only_after_the_parameters_are_accepted(
    tmp_path, monkeypatch, listener, booted_first
):
    f = _params(tmp_path, listener.getsockname()[1], "qz7k", monkeypatch)  # too short
    with pytest.raises(ParameterError, match="registry_users"):
        runner.run(f, out_root=tmp_path / "runs")
    assert booted_first == [0]
    assert _connections(listener, 0.5) == 0


def test_the_kernel_connects_once_the_parameters_are_accepted(
    tmp_path, monkeypatch, listener, booted_first
):
    """The control of the test above: the same booted kernel and the same window, but the
    parameters are accepted; the listener does count the kernel's connection."""
    went: list[int] = []
    go = runner.SharedKernel.go

    class Seen(Exception):
        pass

    def go_and_watch(kernel):
        go(kernel)
        went.append(_connections(listener, GATE_WINDOW, first=True))
        raise Seen  # the rest of the run is not this test's business

    monkeypatch.setattr(runner.SharedKernel, "go", go_and_watch)
    f = _params(tmp_path, listener.getsockname()[1], "a-long-enough-test-password", monkeypatch)
    with pytest.raises(Seen):
        runner.run(f, out_root=tmp_path / "runs", log=lambda *_: None)
    assert booted_first == [0]
    assert went == [1]


def test_a_dead_kernel_fails_its_notebook_and_the_run_is_recorded(tmp_path, monkeypatch, listener):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    stand_in_notebook(nbs / "01-dies.ipynb", "import os\nos._exit(3)")
    stand_in_notebook(nbs / "02-after.ipynb", "print('not reached')")
    monkeypatch.setattr(runner, "NOTEBOOKS", nbs)
    f = _params(tmp_path, listener.getsockname()[1], "a-long-enough-test-password", monkeypatch)
    summary = runner.run(f, out_root=tmp_path / "runs", log=lambda *_: None)
    assert summary.failed is not None and summary.failed.name == "01-dies"
    assert "DeadKernelError" in summary.failed.error or "stopped" in summary.failed.error
    assert [n.status for n in summary.notebooks] == ["failed", "skipped"]
    assert (Path(summary.folder) / "summary.json").exists()
    # Accepted parameters: the kernel went to look at the host while it booted.
    assert _connections(listener, 0.5) >= 1


def test_kernel_folders_of_dead_runs_are_swept(tmp_path):
    import subprocess

    from runbook_lib.kernel import sweep

    gone = subprocess.Popen(["true"])
    gone.wait()
    for name, pid in (("runbook-kernel-dead", gone.pid), ("runbook-kernel-live", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "owner").write_text(str(pid))
    (tmp_path / "runbook-kernel-new").mkdir()  # no owner yet: being made
    (tmp_path / "other").mkdir()
    assert sweep(str(tmp_path)) == [str(tmp_path / "runbook-kernel-dead")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other",
        "runbook-kernel-live",
        "runbook-kernel-new",
    ]


def test_a_prompt_secret_is_refused_before_anyone_is_asked(monkeypatch):
    import getpass

    import pytest as _pytest

    from runbook_lib import params, runner
    from runbook_lib.errors import SecretError

    monkeypatch.setattr(getpass, "getpass", lambda *a: pytest_fail())
    p = params.load(
        {"host": "10.204.0.9", "registry_host": "10.204.0.9", "registry_users": {"a": "prompt"}}
    )
    with _pytest.raises(SecretError, match=r"registry_users\.a.*env:NAME or file:PATH"):
        runner.resolve_secrets(p)


def pytest_fail():
    raise AssertionError("getpass was called")


def test_an_out_folder_that_cannot_be_made_is_named(tmp_path):
    import pytest as _pytest

    from runbook_lib.errors import ParameterError
    from runbook_lib.runner import new_folder

    a_file = tmp_path / "file"
    a_file.write_text("")
    for root in (a_file, a_file / "below", Path("/proc/runbook-test")):
        with _pytest.raises(ParameterError, match=r"'--out'.*cannot make a run folder"):
            new_folder(root, "run")


def test_a_node_s_unresolvable_sudo_password_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RB_TEST_PW", "a-long-enough-password")
    monkeypatch.delenv("RB_TEST_NODE_SUDO", raising=False)
    f = tmp_path / "p.yaml"
    f.write_text(
        "host: 127.0.0.1\nregistry_host: registry.test\n"
        "registry_users: {admin: env:RB_TEST_PW}\n"
        "nodes: [{address: 10.0.0.2, sudo_password: env:RB_TEST_NODE_SUDO}]\n"
    )
    with pytest.raises(SecretError, match="RB_TEST_NODE_SUDO"):
        runner.run(f, out_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_an_on_demand_notebook_runs_only_when_named(tmp_path):
    import nbformat

    for name in ("01-a", "02-b", "03-c"):
        stand_in_notebook(tmp_path / f"{name}.ipynb", "print(1)")
    nb = nbformat.read(tmp_path / "02-b.ipynb", as_version=4)
    nb.metadata["runbook"] = {"on_demand": True}
    nbformat.write(nb, tmp_path / "02-b.ipynb")
    nbs = runner.notebooks(tmp_path)
    assert [p.stem for p in runner.select(nbs, None, None)] == ["01-a", "03-c"]
    assert [p.stem for p in runner.select(nbs, "02", None)] == ["03-c"]
    assert [p.stem for p in runner.select(nbs, None, ["02"])] == ["02-b"]
    assert [p.stem for p in runner.select(nbs, None, ["01", "2"])] == ["01-a", "02-b"]
