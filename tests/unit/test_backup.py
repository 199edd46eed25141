"""Notebooks 15 and 16's pure parts: the backup's names, its checksums, a backup refused
before anything on a host changes, the comparison of tags, paths given relative."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runbook_lib import backup, runner
from runbook_lib.errors import ParameterError


def test_a_backup_is_named_after_the_registry_and_the_time_in_utc():
    at = datetime(2026, 12, 2, 11, 15, 0, tzinfo=timezone(timedelta(hours=1)))
    assert backup.backup_name("docker.example.com", at) == "docker.example.com-20261202T101500Z"
    assert backup.backup_name("2001:db8::1", at) == "2001_db8__1-20261202T101500Z"
    listing, sums = backup.companions(Path("/b/docker.example.com-20261202T101500Z.tar.gz"))
    assert (listing.name, sums.name) == (
        "docker.example.com-20261202T101500Z.json",
        "docker.example.com-20261202T101500Z.sha256",
    )


def test_checksum_lines_as_sha256sum_writes_and_reads_them():
    text = f"{'a' * 64}  x.tar.gz\n{'b' * 64} *x.json\nnot a line\n{'c' * 63}  short\n"
    assert backup.parse_checksums(text) == {"x.tar.gz": "a" * 64, "x.json": "b" * 64}


def test_differences_name_each_tag_not_served_with_the_backups_digest():
    wanted = {"app": {"v1": "sha256:1", "v2": "sha256:2"}, "other": {"x": "sha256:3"}}
    assert backup.differences(wanted, wanted) == []
    extra = {**wanted, "new": {"y": "sha256:9"}}  # what the registry has beyond: no matter
    assert backup.differences(wanted, extra) == []
    found = {"app": {"v1": "sha256:1", "v2": "sha256:7"}}
    assert backup.differences(wanted, found) == [
        "app:v2 is sha256:7, the backup has sha256:2",
        "other:x is missing, the backup has sha256:3",
    ]


def write_backup(folder: Path, content=None) -> Path:
    """A backup as notebook 15 writes one (the tarball's content does not matter here)."""
    tarball = folder / "reg-20261202T101500Z.tar.gz"
    tarball.write_bytes(b"not really gzip")
    listing, sums = backup.companions(tarball)
    doc = {"format": 1, "repositories": content or {"app": {"v1": "sha256:1"}}}
    listing.write_text(json.dumps(doc))
    sums.write_text(
        "".join(
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in (tarball, listing)
        )
    )
    return tarball


def test_a_whole_backup_is_read_with_its_tags(tmp_path):
    tarball = write_backup(tmp_path)
    b = backup.read_backup(str(tarball))
    assert b.content == {"app": {"v1": "sha256:1"}}
    assert b.size == len(b"not really gzip")
    assert b.sha256 == hashlib.sha256(b"not really gzip").hexdigest()


def refusal(value) -> ParameterError:
    with pytest.raises(ParameterError) as e:
        backup.read_backup(value)
    assert e.value.name == "restore_from"
    return e.value


def test_no_backup_named_is_refused_saying_what_is_needed(tmp_path):
    assert "needs the backup to restore" in str(refusal(None))
    assert "needs the backup to restore" in str(refusal(""))
    assert "is not a .tar.gz file" in str(refusal(str(tmp_path / "missing.tar.gz")))
    (tmp_path / "x.zip").write_bytes(b"")
    assert "is not a .tar.gz file" in str(refusal(str(tmp_path / "x.zip")))


def test_a_damaged_or_partial_backup_is_refused(tmp_path):
    tarball = write_backup(tmp_path)
    listing, sums = backup.companions(tarball)
    tarball.write_bytes(b"not really gzip, changed")
    err = refusal(str(tarball))
    assert f"{tarball.name} does not match its checksum" in str(err)
    tarball = write_backup(tmp_path)
    listing.write_text(listing.read_text().replace("sha256:1", "sha256:2"))
    assert f"{listing.name} does not match its checksum" in str(refusal(str(tarball)))
    tarball = write_backup(tmp_path)
    sums.unlink()
    assert f"{sums.name} missing beside it" in str(refusal(str(tarball)))
    tarball = write_backup(tmp_path)
    sums.write_text(sums.read_text().splitlines()[0] + "\n")
    assert f"has no checksum of {listing.name}" in str(refusal(str(tarball)))


def test_local_paths_given_relative_are_made_absolute_for_the_kernel():
    values = {"backup_dir": "backups", "restore_from": "/abs/x.tar.gz", "host": "h"}
    assert runner.local_paths(values, "/work/here") == {"backup_dir": "/work/here/backups"}
    assert runner.local_paths({"backup_dir": "~/b", "restore_from": None}, "/w") == {}
    assert runner.local_paths({}, "/w") == {}
