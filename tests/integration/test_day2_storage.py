"""Day-2 storage on the lab's fresh host: notebooks 14 (delete tags, collect garbage),
15 (backup) and 16 (restore), each under the runner and alone under papermill.

Self-sufficient: the host is booted when it is down, and built by a whole run when it has
no registry; after tests/integration/test_fresh_host.py it is simply used as it is. The
host is left with the registry as parameters/lab.yaml deploys it.

One story, in order: two images pushed (the lab's hello-world, and a layer of random bytes
of this run's own, so that its blobs are nobody else's), one deleted, its blobs collected
while everything else stays pullable by digest; a second run changes nothing;
--delete-untagged refused on registry 2.x; a backup, the volume wiped for real, a restore,
the same digests, a second restore that changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import papermill
import pytest
import yaml

from runbook_lib import context, params, runner, storage
from tests.conftest import CLIENT, ROOT, lab_missing
from tests.integration.test_fresh_host import ADDRESS, FRESH, on_host

pytestmark = pytest.mark.fresh
PARAMS = ROOT / "parameters/lab.yaml"
REGISTRY = f"{ADDRESS}:5000"
SERVICE, VOLUME = "manager_registry", "/var/lib/docker/volumes/manager_registry/_data"
quiet = {"log": lambda *_: None}

# A throw-away Docker login on the host; the password arrives on standard input.
LOGIN = (
    "set -e\nexport DOCKER_CONFIG=$(mktemp -d)\ntrap 'rm -rf \"$DOCKER_CONFIG\"' EXIT\n"
    f"docker login -u admin --password-stdin {REGISTRY} >/dev/null 2>&1\n"
)
SSH = [
    *("ssh", "-F", "none", "-i", str(CLIENT / "id_ed25519"), "-o", "IdentitiesOnly=yes"),
    *("-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={CLIENT / 'known_hosts'}"),
    *("-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", f"root@{ADDRESS}"),
]


def logged_in(script: str) -> str:
    """A script run on the host after LOGIN, as the registry's first user."""
    r = subprocess.run(
        [*SSH, LOGIN + script],
        stdin=open(CLIENT / "registry-admin.password", "rb"),  # noqa: SIM115
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"{script}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def registry_answers() -> bool:
    r = subprocess.run([*SSH, f"docker service inspect {SERVICE}"], capture_output=True)
    return r.returncode == 0


def write_params(folder: Path, name: str, **changes) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(PARAMS.read_text()), **changes}))
    return path


def run(folder: Path, params_file: Path, *only: str) -> runner.RunSummary:
    return runner.run(params_file, only=list(only), out_root=folder / "runs", **quiet)


def steps(summary: runner.RunSummary) -> dict[str, dict]:
    """Each step's result as its notebook recorded it (details included)."""
    found = {}
    for n in summary.notebooks:
        report = runner.read_report(Path(summary.folder) / f"{n.name}.ipynb") or {}
        found.update({s["name"]: s for s in report.get("steps", [])})
    return found


def alone(notebook: str, params_file: Path, out: Path) -> dict:
    """The notebook run by papermill itself, as `papermill NB OUT -f PARAMS` would; its
    report."""
    papermill.execute_notebook(
        str(ROOT / "notebooks" / notebook),
        str(out),
        parameters=yaml.safe_load(params_file.read_text()),
        cwd=str(ROOT / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    return runner.read_report(out)


def spec() -> dict:
    return json.loads(on_host(f"docker service inspect --format '{{{{json .Spec}}}}' {SERVICE}"))


def usage() -> tuple[int, int]:
    """Bytes in the registry's volume, and its blobs."""
    out = on_host(
        f"du -sb {VOLUME} | cut -f1; find {VOLUME}/docker/registry/v2/blobs -name data | wc -l"
    ).split()
    return int(out[0]), int(out[1])


def rb() -> context.Runbook:
    """The runbook's view of the host, to ask the registry's API as notebook 14 does."""
    return context.Runbook(params.load_yaml(PARAMS), "test")


def served(repo: str, digest: str) -> bool:
    """The registry serves this manifest by digest, and every blob it names."""
    r = rb()
    answer = storage.api(r, f"/v2/{repo}/manifests/{digest}", headers={"Accept": storage.ACCEPT})
    if answer.status != 200:
        return False
    manifest = answer.json()
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    return all(storage.api(r, f"/v2/{repo}/blobs/{b}", "HEAD").status == 200 for b in blobs)


def pulled(ref: str) -> bool:
    """`docker pull` of a reference by digest works on the host."""
    out = logged_in(f"docker pull -q {ref} >/dev/null && echo pulled || true")
    return "pulled" in out


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The fresh host up, with the registry built; lab.yaml's registry again afterwards."""
    if os.geteuid() != 0:
        lab_missing("the fresh host needs root (run the lab tests as root)")
    if subprocess.run(["bash", str(FRESH), "status"], capture_output=True).returncode != 0:
        up = subprocess.run(["bash", str(FRESH), "up"], capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
    folder = tmp_path_factory.mktemp("day2")
    if not registry_answers():
        whole = runner.run(PARAMS, out_root=folder / "runs", **quiet)
        assert whole.failed is None, whole.failed
    # 08 pushes hello-world again when the registry lacks it (a volume left empty).
    verified = run(folder, PARAMS, "07", "08")
    assert verified.failed is None, verified.failed
    yield folder
    back = run(folder, PARAMS, "07")
    assert back.failed is None, back.failed


@pytest.fixture(scope="module")
def pushed(host):
    """day2/keep:v1 (hello-world) and day2/gone:v1 (3 MB of random bytes, this run's own);
    their digests."""
    # (A host the air-gapped test built never had hello-world itself: its mirror gives it.)
    out = logged_in(
        f"""
        docker image inspect hello-world >/dev/null 2>&1 || docker pull -q hello-world >/dev/null
        docker tag hello-world {REGISTRY}/day2/keep:v1
        docker push {REGISTRY}/day2/keep:v1 >/dev/null
        d=$(mktemp -d); head -c 3000000 /dev/urandom > "$d/blob"
        tar -C "$d" -c blob | docker import - {REGISTRY}/day2/gone:v1 >/dev/null; rm -rf "$d"
        docker push {REGISTRY}/day2/gone:v1 >/dev/null
        docker image inspect --format '{{{{join .RepoDigests "\\n"}}}}' \
            {REGISTRY}/day2/keep:v1 {REGISTRY}/day2/gone:v1
        docker image rm {REGISTRY}/day2/gone:v1 >/dev/null
        """
    )
    digests = {}
    for line in out.split():
        name, _, digest = line.partition("@")
        digests[name.removeprefix(f"{REGISTRY}/")] = digest
    hello = storage.manifest_digest(rb(), "hello-world", "latest")
    return {"keep": digests["day2/keep"], "gone": digests["day2/gone"], "hello": hello}


@pytest.fixture(scope="module")
def collected(host, pushed):
    """Notebook 07 with deletes allowed, then 14 deleting day2/gone:v1 and collecting."""
    deleting = write_params(
        host, "deleting", registry_storage_delete=True, storage_delete_tags=["day2/gone:v1"]
    )
    assert run(host, deleting, "07").failed is None
    before, spec_before = usage(), spec()
    assert served("day2/gone", pushed["gone"])
    summary = run(host, deleting, "14")
    return deleting, summary, before, usage(), spec_before, spec()


def test_14_deletes_the_tag_and_collects_its_blobs_only(collected, pushed):
    _, summary, (size0, blobs0), (size1, blobs1), spec0, spec1 = collected
    assert summary.failed is None, summary.failed
    s = steps(summary)
    assert s["Delete tags"]["status"] == "changed"
    assert s["Delete tags"]["reason"] == "deleted day2/gone:v1"
    gc = s["Garbage collection"]
    assert gc["status"] == "changed", gc
    # Its manifest, its config and its layer; 3 MB of random bytes do not compress.
    assert blobs0 - blobs1 >= 3 and size0 - size1 >= 3_000_000, (blobs0, blobs1, size0, size1)
    assert gc["details"]["blobs"] == f"{blobs0} -> {blobs1}"
    assert any("REGISTRY_STORAGE_MAINTENANCE_READONLY" in a for a in gc["actions"])
    # Read-only while it ran, then back to exactly the stack's spec.
    assert storage.same_spec(spec1, spec0)
    assert not served("day2/gone", pushed["gone"])
    assert served("day2/keep", pushed["keep"]) and served("hello-world", pushed["hello"])
    assert pulled(f"{REGISTRY}/day2/keep@{pushed['keep']}")
    assert pulled(f"{REGISTRY}/hello-world@{pushed['hello']}")


def test_14_again_changes_nothing(collected, host):
    deleting = collected[0]
    spec0 = spec()
    again = run(host, deleting, "14")
    assert again.failed is None, again.failed
    assert [n.changed for n in again.notebooks] == [0]
    s = steps(again)
    assert s["Delete tags"]["reason"] == "already gone: day2/gone:v1"
    assert s["Garbage collection"]["reason"].startswith("nothing to collect")
    assert storage.same_spec(spec(), spec0)


def test_14_alone_under_papermill(collected, host):
    report = alone("14-storage.ipynb", collected[0], host / "14-alone.ipynb")
    assert report["status"] == "ok", report


def test_delete_untagged_is_refused_on_registry_2(collected, host):
    untagged = write_params(
        host, "untagged", registry_storage_delete=True, storage_gc_delete_untagged=True
    )
    spec0 = spec()
    summary = run(host, untagged, "14")
    assert summary.failed is not None
    error = summary.failed.error
    assert "storage_gc_delete_untagged" in error and "distribution#3178" in error, error
    assert "2.8" in error  # the registry's version, as it says it
    assert steps(summary)["Storage parameters"]["status"] == "failed"  # before anything
    assert storage.same_spec(spec(), spec0)


def test_deleting_needs_registry_storage_delete(collected, host):
    refused = write_params(host, "refused", storage_delete_tags=["day2/keep:v1"])
    summary = run(host, refused, "14")
    assert summary.failed is not None
    assert "'registry_storage_delete' = False" in summary.failed.error


@pytest.fixture(scope="module")
def backed_up(collected, host):
    backups = host / "backups"
    saving = write_params(host, "saving", registry_storage_delete=True, backup_dir=str(backups))
    spec0 = spec()
    summary = run(host, saving, "15")
    return saving, summary, backups, spec0, spec()


def test_15_backs_up_the_volume_read_only_with_its_digests(backed_up, pushed):
    _, summary, backups, spec0, spec1 = backed_up
    assert summary.failed is None, summary.failed
    (tarball,) = backups.glob("*.tar.gz")
    assert tarball.name.startswith(f"{ADDRESS}-") and tarball.name.endswith("Z.tar.gz")
    check = subprocess.run(
        ["sha256sum", "-c", tarball.name.replace(".tar.gz", ".sha256")],
        cwd=backups,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listing = json.loads(tarball.with_name(tarball.name.replace(".tar.gz", ".json")).read_text())
    assert listing["repositories"]["day2/keep"] == {"v1": pushed["keep"]}
    assert listing["repositories"]["hello-world"]["latest"] == pushed["hello"]
    assert "day2/gone" not in listing["repositories"] or not listing["repositories"]["day2/gone"]
    assert storage.same_spec(spec1, spec0)
    assert not list(backups.glob(".*.part"))


@pytest.fixture(scope="module")
def restored(backed_up, host):
    (tarball,) = backed_up[2].glob("*.tar.gz")
    restoring = write_params(
        host, "restoring", registry_storage_delete=True, restore_from=str(tarball)
    )
    on_host(f"find {VOLUME} -mindepth 1 -delete")  # the images gone, for real
    assert on_host(f"find {VOLUME} -mindepth 1 | wc -l").strip() == "0"
    first = run(host, restoring, "16")
    second = run(host, restoring, "16")
    return restoring, first, second


def test_16_restores_a_wiped_volume_to_the_same_digests(restored, pushed):
    _, first, _ = restored
    assert first.failed is None, first.failed
    assert steps(first)["Restore"]["status"] == "changed"
    assert served("day2/keep", pushed["keep"]) and served("hello-world", pushed["hello"])
    assert storage.manifest_digest(rb(), "day2/keep", "v1") == pushed["keep"]
    assert pulled(f"{REGISTRY}/day2/keep@{pushed['keep']}")


def test_16_twice_changes_nothing(restored):
    _, _, second = restored
    assert second.failed is None, second.failed
    assert [n.changed for n in second.notebooks] == [0]
    assert steps(second)["Restore"]["reason"].startswith("the registry serves every tag")


def test_15_and_16_alone_under_papermill(restored, backed_up, host):
    report = alone("16-restore.ipynb", restored[0], host / "16-alone.ipynb")
    assert report["status"] == "ok", report
    report = alone("15-backup.ipynb", backed_up[0], host / "15-alone.ipynb")
    assert report["status"] == "changed", report
    assert len(list(backed_up[2].glob("*.sha256"))) == 2


def test_16_without_restore_from_is_refused(restored, host):
    summary = run(host, write_params(host, "nothing"), "16")
    assert summary.failed is not None
    assert "'restore_from' = None" in summary.failed.error
    assert "needs the backup to restore" in summary.failed.error


def test_a_registry_left_read_only_is_deployed_again_by_07(restored, host):
    """As a run cut between the read-only setting and its removal leaves it: the setting
    does not change the stack digest label, and 07 sees it all the same."""
    on_host(
        "docker service update --detach --quiet --env-add "
        f"""'REGISTRY_STORAGE_MAINTENANCE_READONLY={{"enabled":true}}' {SERVICE}"""
    )
    summary = run(host, restored[0], "07")
    assert summary.failed is None, summary.failed
    service = steps(summary)["Registry service"]
    assert service["status"] == "changed"
    assert "made writable again" in service["reason"], service
    assert not storage.is_read_only(storage.env_of(spec()))
    assert [n.changed for n in run(host, restored[0], "07").notebooks] == [0]
