"""Progress: lines cut from a stream, the plain display headless, streaming from a command."""

from __future__ import annotations

import pytest

from runbook_lib import progress
from runbook_lib.hosts import LineSplitter, LocalHost


@pytest.mark.parametrize(
    "chunks, lines",
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"par", b"tial\nnext"], ["partial", "next"]),
        ([b"10%\r20%\r", b"done\n"], ["10%", "20%", "done"]),
        ([b"\n\n", b"x"], ["x"]),
        ([b"caf\xc3", b"\xa9\n"], ["café"]),
    ],
)
def test_line_splitter(chunks, lines):
    seen: list[str] = []
    s = LineSplitter(seen.append)
    for c in chunks:
        s.feed(c)
    s.close()
    assert seen == lines


def test_a_failing_callback_is_dropped_not_raised():
    calls = []

    def bad(line):
        calls.append(line)
        raise RuntimeError("display gone")

    s = LineSplitter(bad)
    s.feed(b"a\nb\n")
    assert calls == ["a"]


def test_local_host_streams_and_keeps_the_whole_output():
    seen: list[str] = []
    r = LocalHost().run(
        ["sh", "-c", "echo one; echo two >&2; printf three"], privileged=False, on_line=seen.append
    )
    assert sorted(seen) == ["one", "three", "two"]
    assert r.stdout == "one\nthree" and r.stderr == "two\n"


def test_headless_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(progress.HEADLESS_ENV, raising=False)
    assert not progress.interactive()


def test_headless_when_asked_even_in_a_kernel_a_person_watches(monkeypatch):
    """A kernel whose execution may ask for input (JupyterLab's) is interactive, unless
    ``RUNBOOK_HEADLESS`` says otherwise ("0" does not)."""
    import types

    import ipykernel  # noqa: F401 (what interactive() looks for first)
    import IPython

    kernel = types.SimpleNamespace(_allow_stdin=True)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=kernel))
    monkeypatch.delenv(progress.HEADLESS_ENV, raising=False)
    assert progress.interactive()
    monkeypatch.setenv(progress.HEADLESS_ENV, "0")
    assert progress.interactive()
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    assert not progress.interactive()
    monkeypatch.delenv(progress.HEADLESS_ENV)
    kernel._allow_stdin = False  # papermill's and nbclient's executions
    assert not progress.interactive()


def test_headless_prints_little_and_always_a_final_line(capsys, monkeypatch):
    with progress.activity("apt-get install docker.io") as p:
        for i in range(1000):
            p.line(f"Unpacking {i}")
    out = capsys.readouterr().out.splitlines()
    assert out == [out[-1]] and out[-1].startswith("apt-get install docker.io: done in")
    monkeypatch.setattr(progress, "HEADLESS_EVERY", 0.0)
    with progress.activity("pull") as p:
        p.update("layer 1")
    assert capsys.readouterr().out.splitlines()[0].endswith(": layer 1")


def test_a_failure_ends_with_its_line(capsys):
    with pytest.raises(ValueError), progress.activity("wait"):
        raise ValueError("gave up")
    assert capsys.readouterr().out.strip().startswith("wait: failed after 0 s: gave up")
