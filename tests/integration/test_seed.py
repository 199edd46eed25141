"""Seeding the lab's registry from archives (notebook 18, runbook_lib.seed), against the
registry that parameters/lab-local.yaml builds: a ``docker save`` of hello-world and
registry:2, and a two-platform OCI archive these tests make; both ways to the registry
(HTTPS from the runner, and through SSH); a second seed all ``ok``; a moved name with both
digests; every bad archive refused with nothing tagged; pulls by digest on the host; 18
alone under papermill; 08 with ``verify_archive``."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
import yaml

from runbook_lib import archive as arc
from runbook_lib import context, params, runner, seed
from runbook_lib.steps import StepFailed
from tests import image_archives as ia
from tests.conftest import ROOT

pytestmark = pytest.mark.lab

PARAMS = ROOT / "parameters/lab-local.yaml"
PASSWORD = "/var/lib/runbook-lab/client/registry-admin.password"
RUN = uuid.uuid4().hex[:8]  # repositories of this test run: seedtest-RUN/...


def sh(script: str) -> str:
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, f"{script}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def registry(lab, tmp_path_factory):
    """The registry as lab-local.yaml has it (its certificate and admin password): a whole
    run, which changes nothing on a built lab and builds one that is not."""
    tmp = tmp_path_factory.mktemp("seed-registry")
    summary = runner.run(PARAMS, out_root=tmp / "runs", log=lambda *_: None)
    assert summary.failed is None, summary.failed
    return tmp


@pytest.fixture(scope="module")
def lab_images(lab):
    """hello-world and registry:2 in the engine (tests/lab/images.sh builds what another
    test removed)."""
    sh(f"bash {ROOT}/tests/lab/images.sh")


@pytest.fixture(scope="module")
def saved(registry, lab_images, tmp_path_factory):
    """``docker save hello-world registry:2``: Docker 20.10's layout, two images."""
    path = tmp_path_factory.mktemp("seed-saved") / "hello-and-registry.tar"
    sh(f"docker save hello-world registry:2 -o {path}")
    return path


def multi(tmp_path, name: str | None = None, big: bool = False):
    """A two-platform OCI archive of fresh content (so the first seed uploads)."""
    extra = os.urandom(3 << 20) if big else os.urandom(64)
    platforms = {
        "amd64": [ia.layer({"etc/seeded": RUN.encode()}), ia.layer({"data": extra})],
        "arm64": [ia.layer({"etc/seeded-arm": os.urandom(32)})],
    }
    members = ia.multi_platform(name, platforms)
    return ia.write(tmp_path / f"multi-{uuid.uuid4().hex[:6]}.tar.gz", members, "gzip")


def notebook(entries) -> context.Runbook:
    base = params.read_yaml(PARAMS)
    p = params.load({**base, "seed_images": entries})
    rb = context.Runbook(p, "18-seed")
    rb.recap = lambda: None
    return rb


def seeded(entries, transport="auto"):
    """Notebook 18's steps, as its cells call them, with the transport chosen."""
    rb = notebook(entries)
    read = seed.archives(rb)
    pushed = seed.images(rb, transport)
    served = seed.served(rb, transport)
    return rb, read, pushed, served


def login_and(script: str) -> str:
    return sh(
        "set -e; export DOCKER_CONFIG=$(mktemp -d); trap 'rm -rf $DOCKER_CONFIG' EXIT\n"
        f"docker login -u admin --password-stdin localhost:5000 < {PASSWORD} >/dev/null\n" + script
    )


def test_a_docker_save_archive_seeds_and_a_second_seed_is_all_ok(saved):
    rb, read, pushed, served = seeded([{"archive": str(saved)}], "direct")
    assert read.status == "verified" and set(read.details) == {"hello-world:latest", "registry:2"}
    assert pushed.status in ("changed", "ok")  # the lab's registry may hold them already
    assert "HTTPS from the runner" in pushed.reason
    assert served.status == "verified"
    _, _, again, _ = seeded([{"archive": str(saved)}], "direct")
    assert again.status == "ok" and again.reason.startswith("all 2 image(s)")
    assert all(v.startswith("ok: sha256:") for v in again.details.values())
    # Docker on the host pulls it by digest and runs it.
    digest = next(t.image.digest for t in rb.cache["seed targets"] if t.repo == "registry")
    out = login_and(
        f"docker pull -q localhost:5000/registry@{digest} >/dev/null\n"
        f"docker run --rm localhost:5000/registry@{digest} --version"
    )
    assert "registry" in out


@pytest.mark.parametrize("transport", ["direct", "ssh"])
def test_a_multi_platform_archive_seeds_every_platform(registry, tmp_path, transport):
    name = f"seedtest-{RUN}/multi-{transport}:1"
    path = multi(tmp_path, big=True)
    rb, _, pushed, served = seeded([{"archive": str(path), "name": name}], transport)
    assert pushed.status == "changed", pushed
    assert ("through SSH" if transport == "ssh" else "HTTPS from the runner") in pushed.reason
    (line,) = pushed.details.values()
    assert line.startswith("pushed: sha256:") and "uploaded" in line
    (t,) = rb.cache["seed targets"]
    assert t.image.platforms == ["linux/amd64", "linux/arm64"]
    assert served.status == "verified"
    # Every platform's manifest is there by digest; the tag is the index.
    reg = seed.client(rb, transport)
    for data, _ in t.image.children:
        assert reg.manifest_digest(t.repo, arc.sha256(data)) == arc.sha256(data)
    assert reg.manifest_digest(t.repo, "1") == t.image.digest
    _, _, again, _ = seeded([{"archive": str(path), "name": name}], transport)
    assert again.status == "ok"
    # The host's Docker pulls its platform by the index's digest.
    login_and(f"docker pull -q localhost:5000/{t.repo}@{t.image.digest} >/dev/null")
    sh(f"docker image rm localhost:5000/{t.repo}@{t.image.digest} >/dev/null")


def test_a_name_moved_to_another_image_is_updated_with_both_digests(registry, tmp_path):
    name = f"seedtest-{RUN}/moved:1"
    first, second = multi(tmp_path), multi(tmp_path)
    rb1, _, pushed1, _ = seeded([{"archive": str(first), "name": name}])
    rb2, _, pushed2, _ = seeded([{"archive": str(second), "name": name}])
    old = rb1.cache["seed targets"][0].image.digest
    new = rb2.cache["seed targets"][0].image.digest
    assert pushed1.status == pushed2.status == "changed" and old != new
    assert pushed2.actions == [f"update {name} from {old} to {new}"]
    assert pushed2.details[name].startswith(f"updated: {new}; was {old}: ")


def _bad_archives(tmp_path) -> dict[str, tuple]:
    good = ia.multi_platform("x", {"amd64": [ia.layer({"a": os.urandom(2 << 20)})]})
    truncated = multi(tmp_path, big=True)
    truncated.write_bytes(truncated.read_bytes()[:-4000])
    missing = dict(good)
    del missing[max((k for k in good if k.startswith("blobs/")), key=lambda k: len(good[k]))]
    damaged = dict(good)
    key = max((k for k in good if k.startswith("blobs/")), key=lambda k: len(good[k]))
    damaged[key] = damaged[key][:-1] + bytes([damaged[key][-1] ^ 1])
    return {
        "truncated": (truncated, "truncated"),
        "not-an-image": (ia.write(tmp_path / "notes.tar", {"README": b"hi"}), "not an image"),
        "missing-blob": (ia.write(tmp_path / "missing.tar", missing), "is missing"),
        "damaged": (ia.write(tmp_path / "damaged.tar", damaged), "the archive is damaged"),
    }


@pytest.mark.parametrize("kind", ["truncated", "not-an-image", "missing-blob", "damaged"])
def test_a_bad_archive_is_refused_and_nothing_is_tagged(registry, tmp_path, kind):
    path, reason = _bad_archives(tmp_path)[kind]
    name = f"seedtest-{RUN}/bad-{kind}:1"
    rb = notebook([{"archive": str(path), "name": name}])
    reg = seed.client(rb, "direct")
    with pytest.raises(StepFailed) as e:
        seed.archives(rb)
        seed.images(rb, "direct")
    assert str(path) in str(e.value) and reason in str(e.value)
    assert rb.results[-1].status == "failed"
    assert reg.manifest_digest(f"seedtest-{RUN}/bad-{kind}", "1") is None
    tags = reg.request("GET", f"/v2/seedtest-{RUN}/bad-{kind}/tags/list")
    assert tags.status == 404, tags
    # Not even its blobs: the catalog does not list the repository.
    catalog = yaml.safe_load(reg.request("GET", "/v2/_catalog?n=1000").body)
    assert f"seedtest-{RUN}/bad-{kind}" not in catalog["repositories"]


def test_18_alone_under_papermill_seeds_then_changes_nothing(registry, saved, tmp_path):
    name = f"seedtest-{RUN}/papermill:1"
    entries = [{"archive": str(saved)}, {"archive": str(multi(tmp_path)), "name": name}]
    values = {**yaml.safe_load(PARAMS.read_text()), "seed_images": entries}
    file = tmp_path / "seed.yaml"
    file.write_text(yaml.safe_dump(values))
    reports = []
    for i in (1, 2):
        out = tmp_path / f"18-{i}.ipynb"
        r = subprocess.run(
            [str(ROOT / ".venv/bin/papermill"), str(ROOT / "notebooks/18-seed.ipynb"), str(out)]
            + ["-f", str(file), "--cwd", str(ROOT / "notebooks")],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        reports.append(runner.read_report(out))
    assert reports[0]["status"] == "changed"
    assert (reports[1]["status"], reports[1]["changed"]) == ("ok", 0)
    steps = {s["name"]: s for s in reports[1]["steps"]}
    assert steps["Seed the registry"]["status"] == "ok"
    assert set(steps["Seed the registry"]["details"]) == {"hello-world:latest", "registry:2", name}


def test_a_whole_run_skips_18_without_seed_images(registry, tmp_path):
    summary = runner.run(PARAMS, only=["18"], out_root=tmp_path / "runs", log=lambda *_: None)
    (nb,) = summary.notebooks
    assert nb.status == "skipped", nb


def test_08_seeds_verify_image_from_an_archive_instead_of_docker_hub(
    registry, lab_images, tmp_path
):
    archive = tmp_path / "hello.tar"
    sh(f"docker save hello-world -o {archive}")
    values = {
        **yaml.safe_load(PARAMS.read_text()),
        "verify_archive": str(archive),
        "verify_push": "always",
    }
    file = tmp_path / "verify.yaml"
    file.write_text(yaml.safe_dump(values))
    summary = runner.run(file, only=["08"], out_root=tmp_path / "runs", log=lambda *_: None)
    assert summary.failed is None, summary.failed
    (nb,) = summary.notebooks
    steps = {s["name"]: s["status"] for s in nb.steps}
    assert steps["Seed from the archive"] in ("ok", "changed")
    for hub in ("Run the image", "Tag", "Push", "Remove the local images"):
        assert steps[hub] == "skipped", (hub, steps)
    assert steps["Pull"] == "changed" and steps["Run the pulled image"] == "verified"
    assert steps["Catalog"] == "verified"
    # Again with verify_push auto: the image is there, nothing to do.
    values["verify_push"] = "auto"
    file.write_text(yaml.safe_dump(values))
    again = runner.run(file, only=["08"], out_root=tmp_path / "runs", log=lambda *_: None)
    (nb,) = again.notebooks
    assert (nb.status, nb.changed) == ("ok", 0), nb.steps


def test_a_blob_another_image_of_the_run_sent_is_mounted_not_sent_again(registry, tmp_path):
    shared = ia.layer({"shared": os.urandom(1 << 20)})
    own = ia.layer({"own": os.urandom(64)})
    a, b = f"seedtest-{RUN}/mount-a:1", f"seedtest-{RUN}/mount-b:1"
    members = ia.legacy(
        [([a], [shared], ia.config([shared])), ([b], [shared, own], ia.config([shared, own]))]
    )
    path = ia.write(tmp_path / "shared.tar", members)
    rb, _, pushed, served = seeded([{"archive": str(path)}], "direct")
    assert pushed.status == "changed" and served.status == "verified"
    assert "uploaded" in pushed.details[a] and "mounted" not in pushed.details[a]
    assert ", 1 mounted" in pushed.details[b], pushed.details[b]
