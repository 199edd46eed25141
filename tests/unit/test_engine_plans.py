"""Docker engine plans for each distribution family, from canned facts."""

from __future__ import annotations

import subprocess

import pytest

from runbook_lib import engine
from runbook_lib.errors import ParameterError
from runbook_lib.facts import parse_os_release

DEBIAN = parse_os_release(
    ["ID=debian", 'VERSION_ID="12"', "VERSION_CODENAME=bookworm", 'PRETTY_NAME="Debian 12"']
)
UBUNTU = parse_os_release(
    [
        "ID=ubuntu",
        "ID_LIKE=debian",
        'VERSION_ID="22.04"',
        "VERSION_CODENAME=jammy",
        "UBUNTU_CODENAME=jammy",
    ]
)
MINT = parse_os_release(
    [
        "ID=linuxmint",
        'ID_LIKE="ubuntu debian"',
        'VERSION_ID="21"',
        "VERSION_CODENAME=vanessa",
        "UBUNTU_CODENAME=jammy",
    ]
)
ROCKY9 = parse_os_release(['ID="rocky"', 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.3"'])
RHEL8 = parse_os_release(['ID="rhel"', 'ID_LIKE="fedora"', 'VERSION_ID="8.9"'])
CENTOS7 = parse_os_release(['ID="centos"', 'ID_LIKE="rhel fedora"', 'VERSION_ID="7"'])

NONE = engine.EngineFacts()


def argvs(plan):
    return [list(c.argv) for c in plan]


def test_facts_parser():
    f = engine.parse_facts(
        "== installed\ndocker.io 20.10.24+dfsg1-1+b3\nrunc 1.1.5\n== repo\n== systemd\n"
        "enabled enabled\nactive active\n== server\n20.10.24\n== end\n"
    )
    assert f.installed == {"docker.io": "20.10.24+dfsg1-1+b3", "runc": "1.1.5"}
    assert f.systemd and f.enabled == "enabled" and f.active == "active" and f.server == "20.10.24"
    sysv = engine.parse_facts(
        "== systemd\n== sysv\nscript\n/etc/rc2.d/S01docker\n== server\n== end\n"
    )
    assert sysv.sysv_script and sysv.sysv_enabled and not sysv.systemd
    bare = engine.parse_facts("== installed\n== repo\n== systemd\n== server\n== end\n")
    assert not bare.systemd and not bare.repo and bare.server == ""


@pytest.mark.parametrize(
    "os_,source,installed,removed",
    [
        (DEBIAN, "distribution", {}, []),
        (DEBIAN, "distribution", {"docker-ce": "5:24"}, ["docker-ce"]),
        (DEBIAN, "docker", {"docker.io": "20", "runc": "1", "curl": "7"}, ["docker.io", "runc"]),
        (
            ROCKY9,
            "docker",
            {"podman": "4", "runc": "1", "buildah": "1"},
            ["podman", "runc", "buildah"],
        ),
        (
            CENTOS7,
            "docker",
            {"docker": "1.13", "docker-common": "1.13"},
            ["docker", "docker-common"],
        ),
    ],
)
def test_remove_only_installed_conflicts(os_, source, installed, removed):
    plan = engine.plan_remove_old(os_, source, engine.EngineFacts(installed=installed))
    if not removed:
        assert plan == []
    else:
        assert argvs(plan)[0][-len(removed) :] == removed
        assert ("apt-get" in argvs(plan)[0]) == (os_.family == "debian")


def test_el_has_no_distribution_package():
    with pytest.raises(ParameterError, match="docker_source"):
        engine.plan_remove_old(ROCKY9, "distribution", NONE)


@pytest.mark.parametrize(
    "os_,url",
    [
        (DEBIAN, "https://download.docker.com/linux/debian"),
        (UBUNTU, "https://download.docker.com/linux/ubuntu"),
        (MINT, "https://download.docker.com/linux/ubuntu"),
        (ROCKY9, "https://download.docker.com/linux/centos"),
        (RHEL8, "https://download.docker.com/linux/rhel"),
    ],
)
def test_repo_urls(os_, url):
    assert engine.repo_url(os_) == url


def test_repo_plans():
    assert engine.plan_repo(DEBIAN, "distribution", NONE) == []
    assert engine.plan_repo(DEBIAN, "docker", engine.EngineFacts(repo=True)) == []
    deb = engine.plan_repo(MINT, "docker", NONE)
    assert deb[-1].data.splitlines()[2] == "Suites: jammy"
    assert argvs(engine.plan_repo(ROCKY9, "docker", NONE))[-1] == [
        "dnf",
        "config-manager",
        "--add-repo",
        "https://download.docker.com/linux/centos/docker-ce.repo",
    ]
    assert argvs(engine.plan_repo(CENTOS7, "docker", NONE))[0][:3] == ["yum", "install", "-y"]


def test_install_latest_only_what_is_missing():
    assert argvs(engine.plan_install(DEBIAN, "distribution", NONE, None))[-1][-1] == "docker.io"
    have = engine.EngineFacts(installed={"docker.io": "20.10"})
    assert engine.plan_install(DEBIAN, "distribution", have, None) == []
    el = argvs(engine.plan_install(ROCKY9, "docker", NONE, None))
    assert el == [["dnf", "install", "-y", *engine.CE]]


AVAILABLE = ["5:24.0.7-1~debian.12~bookworm", "5:24.0.6-1~debian.12~bookworm"]


def test_pinned_version_is_resolved_and_kept():
    plan = argvs(engine.plan_install(DEBIAN, "docker", NONE, "24.0.6", AVAILABLE))
    assert "docker-ce=5:24.0.6-1~debian.12~bookworm" in plan[-1]
    same = engine.EngineFacts(installed={"docker-ce": "5:24.0.6-1~debian.12~bookworm"})
    assert engine.plan_install(DEBIAN, "docker", same, "24.0.6", AVAILABLE) == []
    el = argvs(engine.plan_install(ROCKY9, "docker", NONE, "24.0.7", ["3:24.0.7-1.el9"]))
    assert {"docker-ce-24.0.7-1.el9", "docker-ce-cli-24.0.7-1.el9"} <= set(el[0])


def test_unknown_pinned_version_names_the_parameter():
    with pytest.raises(ParameterError, match="docker_version"):
        engine.plan_install(DEBIAN, "docker", NONE, "1.2.3", AVAILABLE)


@pytest.mark.parametrize(
    "facts,expected",
    [
        (engine.EngineFacts(systemd=True, enabled="enabled", active="active"), []),
        (
            engine.EngineFacts(systemd=True, enabled="disabled", active="active"),
            [["systemctl", "enable", "--now", "docker"]],
        ),
        (engine.EngineFacts(systemd=False, server="20.10"), []),
        (engine.EngineFacts(systemd=False), [["service", "docker", "start"]]),
        (
            engine.EngineFacts(sysv_script=True, server="20.10"),
            [["update-rc.d", "docker", "defaults"]],
        ),
        (engine.EngineFacts(sysv_script=True, sysv_enabled=True, server="20.10"), []),
    ],
)
def test_service_plans(facts, expected):
    assert argvs(engine.plan_service(facts)) == expected


POLICY = """docker-compose-v2:
  Installed: (none)
  Candidate: (none)
docker-compose:
  Installed: (none)
  Candidate: 1.29.2-3
  Version table:
     1.29.2-3 500
docker-compose-plugin:
  Installed: (none)
  Candidate: (none)
"""


def test_compose_v1_is_not_offered():
    from runbook_lib import compose

    cands = compose.parse_candidates(POLICY)
    assert cands == {"docker-compose": "1.29.2-3"}
    assert compose.pick_package(cands) is None
    assert compose.pick_package({"docker-compose": "2.26.1-4"}) == "docker-compose"
    assert (
        compose.pick_package({"docker-compose-v2": "2.24", "docker-compose": "2.26"})
        == "docker-compose-v2"
    )


def test_docker_repository_found_under_any_file_name(tmp_path):
    """The facts script's repository line, run on sample files in place of /etc."""
    start = engine._FACTS.index("grep -lsE")
    line = engine._FACTS[start : engine._FACTS.index("\n", engine._FACTS.index(".repo", start))]
    (tmp_path / "apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "yum.repos.d").mkdir()
    (tmp_path / "apt/sources.list").write_text(
        "# deb https://download.docker.com/linux/debian bookworm stable\n"
    )
    added = tmp_path / "apt/sources.list.d/archive_uri-https_download_docker_com_linux_debian.list"
    added.write_text(
        "deb [signed-by=/k] https://download.docker.com/linux/debian bookworm stable\n"
    )
    ours = tmp_path / "apt/sources.list.d/docker.sources"
    ours.write_text("Types: deb\nURIs: https://download.docker.com/linux/debian\n")
    (tmp_path / "apt/sources.list.d/debian.sources").write_text("URIs: http://mirror/debian\n")
    # What a release upgrade leaves behind, and apt does not read.
    (tmp_path / "apt/sources.list.d/docker.list.distUpgrade").write_text(added.read_text())
    r = subprocess.run(
        ["sh", "-c", line.replace("/etc/", f"{tmp_path}/")], capture_output=True, text=True
    )
    assert sorted(r.stdout.split()) == sorted([str(added), str(ours)])


def test_install_skips_the_update_when_the_lists_were_just_updated():
    plan = argvs(engine.plan_install(DEBIAN, "distribution", NONE, None, lists_fresh=True))
    assert [a for a in plan if "update" in a] == []
    assert plan[-1][-1] == "docker.io"


def test_an_unfinished_dpkg_is_finished_before_apt_runs():
    # What an install cut short leaves: a file in dpkg's journal (the fresh-host lab test
    # makes it for real); apt refuses to run until `dpkg --configure -a`.
    cut = engine.parse_facts("== installed\n== repo\n== dpkg\n0007\n== systemd\n== end\n")
    assert cut.dpkg_unfinished
    assert not engine.parse_facts("== installed\n== dpkg\n== systemd\n== end\n").dpkg_unfinished
    old = engine.EngineFacts(installed={"docker-ce": "5:24"}, dpkg_unfinished=True)
    for plan in (
        engine.plan_install(DEBIAN, "distribution", cut, None),
        engine.plan_repo(DEBIAN, "docker", cut),
        engine.plan_remove_old(DEBIAN, "distribution", old),
    ):
        assert plan[0].describe().startswith("dpkg --configure -a"), plan
        assert [a for a in plan if a.describe().startswith("dpkg")] == plan[:1]
    assert engine.plan_install(ROCKY9, "docker", engine.EngineFacts(dpkg_unfinished=True), None)
    assert engine.plan_finish_dpkg(ROCKY9, cut) == []
    # Nothing to install: nothing to finish either (apt is not run).
    done = engine.EngineFacts(installed={"docker.io": "20.10"}, dpkg_unfinished=True)
    assert engine.plan_install(DEBIAN, "distribution", done, None) == []


def test_finishing_dpkg_waits_for_apt_then_configures():
    class Recorder:
        def __init__(self):
            self.calls = []

        def run(self, argv, **kwargs):
            self.calls.append((list(argv), kwargs.get("check", True)))

    host = Recorder()
    engine.finish_dpkg(host)
    (wait, wait_check), (configure, configure_check) = host.calls
    assert wait[-1] == "check" and "DPkg::Lock::Timeout=300" in wait and not wait_check
    assert configure[-2:] == ["--configure", "-a"] and configure_check
