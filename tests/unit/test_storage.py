"""Notebook 14's pure parts: the tags to delete as parameters, what deleting them means,
registry garbage-collect's output, the registry's version, the read-only setting."""

from __future__ import annotations

import json

import pytest

from runbook_lib import params, registry, stackfile, storage
from runbook_lib.errors import ParameterError, RunbookError

BASE = {"host": "10.0.0.1", "registry_host": "10.0.0.1", "registry_users": {"admin": "env:X"}}

# registry 2.8.2 (the lab's), after the tags of storage-test/gone were deleted. Its
# "marking manifest" lines end with a space, written " $" here.
GC_DRY_RUN = """\
hello-world
hello-world: marking manifest sha256:d753069720c165c9f57439d61f587eba4e8e27d90b8fd9f9bb5d2f2c6a846655 $
hello-world: marking blob sha256:cfcc66623215af455d43d007d4dd9b23483d9237b54b93b215939376caaba396
hello-world: marking blob sha256:373b771d88ce3ae7861dc4403e01856c9816533addbeff3c3af66cfd53069927
storage-test/gone
storage-test/keep
storage-test/keep: marking manifest sha256:d753069720c165c9f57439d61f587eba4e8e27d90b8fd9f9bb5d2f2c6a846655 $
storage-test/keep: marking blob sha256:cfcc66623215af455d43d007d4dd9b23483d9237b54b93b215939376caaba396
storage-test/keep: marking blob sha256:373b771d88ce3ae7861dc4403e01856c9816533addbeff3c3af66cfd53069927

3 blobs marked, 3 blobs and 0 manifests eligible for deletion
blob eligible for deletion: sha256:099cf7a6ff6e26b223e52ecc92bed9027bcbfdce4c862d5577aeec583e34d776
blob eligible for deletion: sha256:29d8164beaaf78767cf997ddf7bfc210d85b017a1cfd6be32a3b5f0a78937d2d
blob eligible for deletion: sha256:81d43e154aafcabb779dfa6e428e8a9eb08043feeef59bd29cd7d64b5a6dd305
""".replace(" $\n", " \n")
GC_NOTHING = """\
hello-world
hello-world: marking manifest sha256:d753069720c165c9f57439d61f587eba4e8e27d90b8fd9f9bb5d2f2c6a846655 $
hello-world: marking blob sha256:cfcc66623215af455d43d007d4dd9b23483d9237b54b93b215939376caaba396

3 blobs marked, 0 blobs and 0 manifests eligible for deletion
""".replace(" $\n", " \n")
# registry 3.x (distribution's registry/storage/garbagecollect.go on main): layer links too.
GC_V3_LINKS = """\
app
app: marking manifest sha256:aaaa $

1 blobs marked, 0 blobs and 0 manifests eligible for deletion
app: layer link eligible for deletion: sha256:bbbb
""".replace(" $\n", " \n")


# -- storage_delete_tags -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("myapp:old", ("myapp", "old")),
        ("tools/builder:2024-01", ("tools/builder", "2024-01")),
        ("a/b/c:v1.2_3", ("a/b/c", "v1.2_3")),
        ("my-app__x.y:latest", ("my-app__x.y", "latest")),
        ("myapp", None),  # no tag
        ("myapp:", None),
        ("MyApp:old", None),  # repositories are lower case
        ("myapp:old:older", None),
        ("localhost:5000/myapp:old", None),  # a registry host
        ("myapp@sha256:" + "0" * 64, None),
        ("a//b:c", None),
        ("myapp:-x", None),  # a tag starts with a word character
        ("myapp:" + "t" * 129, None),  # a tag is at most 128 characters
        (5, None),
    ],
)
def test_split_tag(value, parsed):
    assert params.split_tag(value) == parsed


def test_a_bad_tag_is_named_by_its_place_in_the_list():
    with pytest.raises(ParameterError) as e:
        params.load({**BASE, "storage_delete_tags": ["good:one", "localhost:5000/bad:two"]})
    assert e.value.name == "storage_delete_tags[1]"
    assert e.value.value == "localhost:5000/bad:two"
    assert "REPOSITORY:TAG" in str(e.value) and "myapp:old" in str(e.value)
    assert params.load({**BASE, "storage_delete_tags": ["a:b"]}).storage_delete_tags == ["a:b"]


# -- what deleting means ----------------------------------------------------------------------

CONTENT = {
    "app": {"v1": "sha256:1", "v2": "sha256:2", "latest": "sha256:2"},
    "other": {"v2": "sha256:2"},  # the same manifest in another repository: unaffected
    "empty": {},
}


def test_a_tag_with_a_manifest_of_its_own_is_deleted_by_digest():
    plan = storage.plan_deletions(["app:v1"], CONTENT)
    assert plan.delete == {("app", "sha256:1"): ["v1"]}
    assert plan.gone == [] and plan.refused == []


def test_a_tag_whose_manifest_another_tag_shares_is_refused():
    plan = storage.plan_deletions(["app:v2"], CONTENT)
    assert plan.delete == {}
    (why,) = plan.refused
    assert why.startswith("app:v2 points at sha256:2, as app:latest does")
    assert "other:v2" not in why  # another repository keeps its own


def test_tags_sharing_a_manifest_go_together_when_all_are_listed():
    plan = storage.plan_deletions(["app:v2", "app:latest"], CONTENT)
    assert plan.delete == {("app", "sha256:2"): ["latest", "v2"]}
    assert plan.refused == []


def test_tags_already_gone_are_said_not_deleted():
    plan = storage.plan_deletions(["app:v9", "nowhere:x", "empty:x", "app:v1"], CONTENT)
    assert plan.gone == ["app:v9", "nowhere:x", "empty:x"]
    assert list(plan.delete) == [("app", "sha256:1")]
    assert storage.plan_deletions([], CONTENT) == storage.Deletions()


def test_the_table_shows_each_repository_with_short_digests():
    shown = storage.table({"b": {"v1": "sha256:" + "ab" * 32}, "a": {}, "c": {"y": "x", "x": "y"}})
    assert shown == {"a": "(no tags)", "b": "v1 (" + "ab" * 6 + ")", "c": "x (y), y (x)"}
    assert list(shown) == ["a", "b", "c"]


# -- garbage-collect's output and the registry's version ---------------------------------------


def test_gc_output_with_blobs_eligible():
    plan = storage.parse_gc(GC_DRY_RUN)
    assert (plan.marked, plan.blobs, plan.manifests, plan.layer_links) == (3, 3, 0, 0)
    assert plan.eligible
    assert (
        plan.digests[0] == "sha256:099cf7a6ff6e26b223e52ecc92bed9027bcbfdce4c862d5577aeec583e34d776"
    )
    assert len(plan.digests) == 3


def test_gc_output_with_nothing_eligible():
    plan = storage.parse_gc(GC_NOTHING)
    assert plan == storage.GcPlan(3, 0, 0, 0, ())
    assert not plan.eligible


def test_gc_output_of_registry_3_counts_layer_links():
    plan = storage.parse_gc(GC_V3_LINKS)
    assert (plan.blobs, plan.manifests, plan.layer_links) == (0, 0, 1)
    assert plan.eligible
    assert storage.GcPlan(1, 0, 2, 0).eligible  # manifests only (--delete-untagged)


def test_gc_output_without_its_summary_is_an_error():
    with pytest.raises(RunbookError, match="did not print its summary.*permission denied"):
        storage.parse_gc("hello-world\nfailed to mark: permission denied\n")
    with pytest.raises(RunbookError, match="no output"):
        storage.parse_gc("")


@pytest.mark.parametrize(
    ("version", "major"),
    [
        ("registry github.com/docker/distribution 2.8.2+ds1", 2),  # Debian's
        ("registry github.com/docker/distribution v2.8.3", 2),
        ("registry github.com/distribution/distribution/v3 v3.0.0", 3),
        ("registry github.com/distribution/distribution/v3 3.0.0-rc.1", 3),
        ("something else", None),
        ("", None),
    ],
)
def test_registry_major(version, major):
    assert storage.registry_major(version) == major


def test_delete_untagged_is_refused_on_registry_2_saying_why():
    why = storage.untagged_refusal(2, "registry github.com/docker/distribution v2.8.3")
    assert "v2.8.3" in why and "distribution#3178" in why and "multi-arch" in why
    assert storage.untagged_refusal(None, "") is not None  # unknown: refused too
    assert storage.untagged_refusal(3, "registry ... v3.0.0") is None


# -- read-only -----------------------------------------------------------------------------------


def test_tasks_settled_read_only_or_writable():
    ro = json.dumps(["A=1", f"{registry.MAINTENANCE_ENV}={storage.READ_ONLY_VALUE}"])
    rw = json.dumps(["A=1"])
    assert storage.tasks_settled(f"running {ro}\n", read_only=True)
    assert not storage.tasks_settled(f"running {ro}\n", read_only=False)
    assert storage.tasks_settled(f"running {rw}\n", read_only=False)
    assert not storage.tasks_settled(f"starting {rw}\n", read_only=False)
    assert not storage.tasks_settled(f"running {rw}\nrunning {ro}\n", read_only=False)
    assert not storage.tasks_settled("", read_only=False)  # no task yet


def test_the_read_only_setting_is_seen_by_its_name_only():
    assert storage.is_read_only([f"{registry.MAINTENANCE_ENV}=x"])
    assert not storage.is_read_only([f"{registry.MAINTENANCE_ENV}_OTHER=x", "A=B"])
    spec = {"TaskTemplate": {"ContainerSpec": {"Env": ["A=B"]}}}
    assert storage.env_of(spec) == ["A=B"] and storage.env_of(None) == []


def test_specs_are_the_same_whatever_the_order_of_their_variables():
    spec = {"Labels": {"a": "b"}, "TaskTemplate": {"ContainerSpec": {"Env": ["B=2", "A=1"]}}}
    reordered = {"Labels": {"a": "b"}, "TaskTemplate": {"ContainerSpec": {"Env": ["A=1", "B=2"]}}}
    assert storage.same_spec(spec, reordered)
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["B=2", "A=1"]  # left as it was
    other = {"Labels": {"a": "b"}, "TaskTemplate": {"ContainerSpec": {"Env": ["A=1"]}}}
    assert not storage.same_spec(spec, other)
    assert not storage.same_spec(spec, {**reordered, "Labels": {"a": "c"}})
    assert storage.same_spec({"Name": "x"}, {"Name": "x"})


# -- the stack file and the deploy ------------------------------------------------------------

DIGESTS = {"cert_digest": "a" * 12, "key_digest": "b" * 12, "htpasswd_digest": "c" * 12}


def test_storage_delete_is_in_the_stack_file_only_when_true():
    plain = stackfile.with_digest(stackfile.RegistryStack(**DIGESTS))
    deleting = stackfile.with_digest(stackfile.RegistryStack(**DIGESTS, storage_delete=True))
    assert "REGISTRY_STORAGE_DELETE_ENABLED" not in stackfile.render(plain)
    assert "REGISTRY_STORAGE_DELETE_ENABLED: 'true'" in stackfile.render(deleting)
    assert plain.stack_digest != deleting.stack_digest
    # The stacks deployed before the parameter existed keep their digest (this one's, as
    # the runbook rendered it before).
    assert plain.stack_digest == "f6a36159ea7a"
    assert registry.plan_deploy(plain.stack_digest, deleting)


def test_a_service_left_read_only_is_deployed_again():
    stack = stackfile.with_digest(stackfile.RegistryStack(**DIGESTS))
    assert registry.plan_deploy(stack.stack_digest, stack, 1, read_only=False) == []
    (deploy,) = registry.plan_deploy(stack.stack_digest, stack, 1, read_only=True)
    assert deploy.argv[:3] == ["docker", "stack", "deploy"]
