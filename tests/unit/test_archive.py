"""Image archives read without Docker: the three layouts, compressed or not, each bad
archive refused with its file and reason, and the blobs read back and checked."""

from __future__ import annotations

import hashlib
import json

import pytest

from runbook_lib import archive as arc
from runbook_lib import seed
from tests import image_archives as ia

L1 = ia.layer({"hello": b"hello from layer one\n"})
L2 = ia.layer({"data/big": bytes(range(256)) * 9000})  # over 2 MiB: read by the second pass
CFG = ia.config([L1, L2])


def legacy_two(tmp_path, compression="none"):
    other_cfg = ia.config([L1], "arm64")
    members = ia.legacy([(["hello:latest"], [L1, L2], CFG), (["tools/other:1"], [L1], other_cfg)])
    return ia.write(tmp_path / f"two.{compression}.tar", members, compression)


@pytest.mark.parametrize("compression", ["none", "gzip", "xz", "zstd"])
def test_legacy_docker_save_gives_one_image_per_name_with_a_made_manifest(tmp_path, compression):
    a = arc.read(legacy_two(tmp_path, compression))
    assert a.compression == compression
    assert [i.name for i in a.images] == ["hello:latest", "tools/other:1"]
    hello = a.images[0]
    doc = json.loads(hello.manifest)
    assert doc["mediaType"] == arc.OCI_MANIFEST
    assert doc["config"]["digest"] == ia.sha(CFG)
    assert [x["digest"] for x in doc["layers"]] == [ia.sha(L1), ia.sha(L2)]
    assert [x["size"] for x in doc["layers"]] == [len(L1), len(L2)]
    assert hello.layers == 2 and hello.platforms == ["linux/amd64"]
    assert a.images[1].platforms == ["linux/arm64"]
    # The same archive read again makes the same manifest: a second seed finds it.
    assert arc.read(a.path).images[0].digest == hello.digest


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_blobs_come_back_in_archive_order_and_whole(tmp_path, compression):
    a = arc.read(legacy_two(tmp_path, compression))
    got = {}
    for blob, chunks in a.blobs(a.images[0].blobs):
        h = arc.Hashed(blob, a.path)
        got[blob.digest] = b"".join(h.wrap(chunks))
        h.check()
    assert got == {ia.sha(CFG): CFG, ia.sha(L1): L1, ia.sha(L2): L2}


def test_docker_25_save_is_read_from_its_index(tmp_path):
    path = ia.write(tmp_path / "d25.tar", ia.docker25("hello-world:latest", [L1], ia.config([L1])))
    (image,) = arc.read(path).images
    assert image.name == "docker.io/library/hello-world:latest"
    assert arc.repository_of(image.name) == ("hello-world", "latest")
    m = ia.oci_manifest(ia.config([L1]), [L1])
    assert image.manifest == m and image.digest == ia.sha(m)  # the stored bytes, not remade


def test_moby_25_0_0s_index_without_layers_falls_back_to_manifest_json(tmp_path):
    cfg = ia.config([L1])
    members = ia.docker25("hello-world:latest", [L1], cfg)
    short = ia.oci_manifest(cfg, [])  # what moby 25.0.0 wrote: only foreign layers
    members["blobs/sha256/" + hashlib.sha256(short).hexdigest()] = short
    index = json.loads(members["index.json"])
    index["manifests"][0].update(digest=ia.sha(short), size=len(short))
    members["index.json"] = json.dumps(index).encode()
    (image,) = arc.read(ia.write(tmp_path / "d25.tar", members)).images
    assert image.name == "hello-world:latest" and image.layers == 1


def test_an_oci_index_keeps_every_platform(tmp_path):
    members = ia.multi_platform("multi", {"amd64": [L1], "arm64": [L2]})
    (image,) = arc.read(ia.write(tmp_path / "oci.tar.gz", members, "gzip")).images
    assert image.media_type == arc.OCI_INDEX
    assert image.platforms == ["linux/amd64", "linux/arm64"]
    assert len(image.children) == 2 and image.layers == 2
    assert {b.digest for b in image.blobs} >= {ia.sha(L1), ia.sha(L2)}


# -- refusals: the file and the reason ------------------------------------------------------


def refusal(path) -> str:
    with pytest.raises(arc.ArchiveError) as e:
        a = arc.read(path)
        for t in a.images:  # the second pass checks the large blobs
            for blob, chunks in a.blobs(t.blobs):
                h = arc.Hashed(blob, a.path)
                for _ in h.wrap(chunks):
                    pass
                h.check()
    assert e.value.path == str(path)
    assert str(e.value).startswith(f"{path}: ")
    return e.value.reason


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_truncated_archive_is_refused(tmp_path, compression):
    path = legacy_two(tmp_path, compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in refusal(path)


def test_a_tar_that_holds_no_image_is_refused(tmp_path):
    path = ia.write(tmp_path / "notes.tar", {"README": b"hello"})
    assert refusal(path).startswith("not an image archive: neither manifest.json")


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"this is not a tar file at all" * 40)
    assert "not a tar archive" in refusal(path)


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"")
    assert refusal(path) == "is empty"


def test_a_manifest_naming_a_missing_blob_is_refused(tmp_path):
    members = ia.multi_platform("m", {"amd64": [L1], "arm64": [L2]})
    del members["blobs/sha256/" + hashlib.sha256(L2).hexdigest()]
    reason = refusal(ia.write(tmp_path / "m.tar", members))
    assert f"names {ia.sha(L2)}, whose blob blobs/sha256/" in reason and "is missing" in reason


def test_a_legacy_layer_file_that_is_missing_is_refused(tmp_path):
    members = ia.legacy([(["a:1"], [L1], ia.config([L1]))])
    del members[next(k for k in members if k.endswith("layer.tar"))]
    assert "which is missing" in refusal(ia.write(tmp_path / "a.tar", members))


def test_a_blob_whose_content_is_not_its_digest_is_refused(tmp_path):
    members = ia.multi_platform("m", {"amd64": [L1, L2]})
    key = "blobs/sha256/" + hashlib.sha256(L2).hexdigest()
    members[key] = members[key][:-1] + b"X"  # same size, other content
    reason = refusal(ia.write(tmp_path / "m.tar", members))
    assert f"not {ia.sha(L2)}" in reason and "damaged" in reason


def test_a_legacy_layer_that_is_not_its_diff_id_is_refused(tmp_path):
    cfg = ia.config([L1])
    members = ia.legacy([(["a:1"], [L2], cfg)])  # the config names L1, the file holds L2
    reason = refusal(ia.write(tmp_path / "a.tar", members))
    assert f"not {ia.sha(L1)}" in reason


def test_a_small_config_that_is_not_its_digest_is_refused_at_once(tmp_path):
    members = ia.multi_platform("m", {"amd64": [L1]})
    cfg = ia.config([L1], "amd64")
    key = "blobs/sha256/" + hashlib.sha256(cfg).hexdigest()
    members[key] = cfg.replace(b"linux", b"LINUX")
    with pytest.raises(arc.ArchiveError) as e:
        arc.read(ia.write(tmp_path / "m.tar", members))
    assert "damaged" in e.value.reason


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "repo", "tag"),
    [
        ("hello-world:latest", "hello-world", "latest"),
        ("docker.io/library/hello-world:latest", "hello-world", "latest"),
        ("docker.io/portainer/agent:lts", "portainer/agent", "lts"),
        ("ghcr.io/org/app:1.2", "org/app", "1.2"),
        ("localhost:5000/app", "app", "latest"),
        ("registry:2", "registry", "2"),
        ("tools/builder", "tools/builder", "latest"),
        ("app:1@sha256:" + "0" * 64, "app", "1"),
    ],
)
def test_where_an_archive_name_goes_in_the_registry(name, repo, tag):
    assert arc.repository_of(name) == (repo, tag)


def test_one_name_for_an_archive_of_several_images_is_refused(tmp_path):
    path = legacy_two(tmp_path)
    with pytest.raises(arc.ArchiveError) as e:
        seed.targets([(str(path), "mine:1")])
    assert "holds 2 images (hello:latest, tools/other:1) and one name, mine:1" in str(e.value)


def test_an_image_without_a_name_needs_one(tmp_path):
    path = ia.write(tmp_path / "m.tar", ia.multi_platform(None, {"amd64": [L1]}))
    with pytest.raises(arc.ArchiveError) as e:
        seed.targets([(str(path), None)])
    assert "without a name" in str(e.value)
    (t,) = seed.targets([(str(path), "base/multi:2")])
    assert (t.repo, t.tag) == ("base/multi", "2")


def test_a_folder_means_every_archive_in_it(tmp_path):
    legacy_two(tmp_path)
    ia.write(tmp_path / "m.tar.zst", ia.multi_platform("m", {"amd64": [L1]}), "zstd")
    (tmp_path / "notes.txt").write_text("not an archive")
    names = [t.name for t in seed.targets([(str(tmp_path), None)])]
    assert names == ["m:latest", "hello:latest", "tools/other:1"]


def test_pieces_cut_a_stream_into_exact_chunks():
    p = seed._Pieces(iter([b"abc", b"defgh", b"i"]))
    seen = []
    assert b"".join(p.take(4, seen.append)) == b"abcd"
    assert b"".join(p.take(4, seen.append)) == b"efgh"
    assert b"".join(p.take(4, seen.append)) == b"i"
    assert sum(seen) == 9


def test_a_plain_tar_cut_inside_a_layer_is_refused_before_anything_is_sent(tmp_path):
    path = legacy_two(tmp_path)
    a = arc.read(path)
    big = max(a.members.values(), key=lambda m: m.size)
    path.write_bytes(path.read_bytes()[: big.offset + big.size // 2])
    with pytest.raises(arc.ArchiveError) as e:
        arc.read(path)  # the first pass alone: no blob read yet
    assert "is truncated: " in e.value.reason and "needs" in e.value.reason


def test_the_plan_says_ok_push_or_update_with_both_digests(tmp_path):
    path = legacy_two(tmp_path)
    hello, other = seed.targets([(str(path), None)])
    old = "sha256:" + "1" * 64
    rows = seed.plan([hello, other], {hello.name: hello.image.digest, other.name: old})
    assert [(t.name, before, text) for t, before, text in rows] == [
        ("hello:latest", hello.image.digest, f"ok: {hello.image.digest}"),
        ("tools/other:1", old, f"update tools/other:1 from {old} to {other.image.digest}"),
    ]
    ((_, before, text),) = seed.plan([other], {})
    assert before is None
    assert text == f"push tools/other:1 {other.image.digest} (1 layers, {len(L1) / 1e6:.1f} MB)"


def test_one_name_for_two_different_images_is_refused(tmp_path):
    first = ia.write(tmp_path / "a.tar", ia.multi_platform("app", {"amd64": [L1]}))
    second = ia.write(tmp_path / "b.tar", ia.multi_platform("app", {"amd64": [L2]}))
    with pytest.raises(arc.ArchiveError) as e:
        seed.targets([(str(first), None), (str(second), None)])
    assert e.value.path == str(second) and "would be named app:latest" in e.value.reason
    # The same image from two archives is seeded once.
    again = ia.write(tmp_path / "c.tar.gz", ia.multi_platform("app", {"amd64": [L1]}), "gzip")
    assert len(seed.targets([(str(first), None), (str(again), None)])) == 1


def test_verify_archive_picks_its_image_by_name_among_several(tmp_path):
    path = legacy_two(tmp_path)
    t = seed._one(str(path), "tools/other:1")
    assert t.image.name == "tools/other:1" and (t.repo, t.tag) == ("tools/other", "1")
    with pytest.raises(arc.ArchiveError) as e:
        seed._one(str(path), "hello-world:latest")
    assert "none named hello-world:latest" in e.value.reason
