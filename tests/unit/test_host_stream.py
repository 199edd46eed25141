"""Host.stream on this machine: a file into a command, its output into a file, unchanged
bytes both ways (the backup's and the restore's path, without SSH)."""

from __future__ import annotations

import os

import pytest

from runbook_lib.errors import CommandFailed
from tests.conftest import UserHost


def test_a_file_goes_in_and_the_output_comes_out_byte_for_byte(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one chunk, not text
    source, sink = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    with open(source, "rb") as src, open(sink, "wb") as out:
        result = UserHost().stream(["cat"], source=src, sink=out)
    assert sink.read_bytes() == data
    assert result.ok and result.stdout == ""


def test_without_a_sink_the_output_is_the_results(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n")
    with open(source, "rb") as src:
        result = UserHost().stream(["wc", "-l"], source=src, display="count the lines")
    assert result.stdout.strip() == "2" and result.command == "count the lines"


def test_a_failing_command_raises_with_its_error(tmp_path):
    with open(tmp_path / "out", "wb") as out, pytest.raises(CommandFailed) as e:
        UserHost().stream(["sh", "-c", "echo broken >&2; exit 3"], sink=out)
    assert e.value.result.exited == 3 and "broken" in e.value.result.stderr
