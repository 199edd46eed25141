"""Live progress for long waits: a bar in JupyterLab, a few plain lines elsewhere.

A step that waits (an apt install, an image pull, a service starting) wraps the wait in an
activity and feeds it what it sees::

    from runbook_lib import progress

    with progress.activity("apt-get install docker-ce") as p:
        rb.host.run(argv, on_line=p.line, timeout=1800)   # each output line, as it comes

    with progress.activity("waiting for the registry", total=timeout, unit="s") as p:
        while not ready():
            p.update(f"{last}; task: {task}", n=0.5)        # status text, and progress

``activity(label, total=None, unit="it")``
    A context manager yielding an :class:`Activity`. ``total=None`` is a wait of unknown
    length (the bar counts what it was fed); with a total the bar fills up.
``Activity.line(text)``
    The latest line of a command's output: shown beside the bar, counted. Fits
    ``Host.run(..., on_line=p.line)``, which calls it for every line of standard output and
    standard error while the command runs (``\\r`` ends a line too, as apt's progress does).
``Activity.update(text=None, n=0)``
    Set the status text and/or advance the bar by ``n``.

Whatever the display, an activity always ends with one plain line, ``LABEL: done in 12 s``
(or ``LABEL: failed after 3 s: ...``), because a saved notebook does not render widget
state: the record keeps that line, never the bar.

How it is shown depends on who is there (see :func:`interactive`):

- In JupyterLab (an IPython kernel whose current cell may ask for input): a ``tqdm.auto``
  bar, an ipywidgets bar, replaced by the plain line when the activity ends.
- Headless (papermill, ``runbook run``, nbconvert, a script): no widget is ever created.
  A plain line ``LABEL (30 s): latest line`` at most every :data:`HEADLESS_EVERY` seconds,
  so a long apt install leaves a handful of lines in the record, and a short wait none
  but the final line.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds between two plain progress lines when nobody watches (papermill's record).
HEADLESS_EVERY = 30.0
#: Set to 1 to force the plain display, whatever the kernel says.
HEADLESS_ENV = "RUNBOOK_HEADLESS"
_WIDTH = 90  # characters of the latest line shown beside the bar


def interactive() -> bool:
    """Whether a person watches this notebook in a front end that shows widgets.

    True only inside an IPython kernel whose current execution may ask for input, as
    JupyterLab's notebooks do. papermill and nbclient (and so ``runbook run``) execute with
    ``allow_stdin=False``, nbconvert too; ipykernel records that per execution request.
    ``RUNBOOK_HEADLESS=1`` forces the headless answer.
    """
    if os.environ.get(HEADLESS_ENV, "") not in ("", "0"):
        return False
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not getattr(kernel, "_allow_stdin", False):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


class Activity:
    """One long wait in progress; see the module's documentation."""

    def __init__(
        self,
        label: str,
        total: float | None,
        unit: str,
        widget: bool,
        out: Any,
        quiet: float = 0.0,
    ):
        self.label = label
        self.total = total
        self.unit = unit
        self.started = time.monotonic()
        self.text = ""  # the latest status line
        self.count = 0.0
        self._out = out
        self._last_shown = self.started
        self._bar = None
        self._handle = None
        # A wait that ends within ``quiet`` seconds shows nothing at all: most registry
        # waits on a run with nothing to do last a few milliseconds.
        self._quiet = quiet
        self._widget_wanted = widget
        if widget and not quiet:
            self._start_widget()

    # -- what a step calls -----------------------------------------------------------------
    def line(self, text: str) -> None:
        """A line of the command's output: the latest one is shown, each one counts."""
        text = text.strip()
        if text:
            self.update(text, n=1 if self.total is None else 0)

    def update(self, text: str | None = None, n: float = 0) -> None:
        """Set the status text and/or advance by ``n``."""
        if text is not None:
            self.text = _short(text)
        self.count += n
        if self._widget_wanted and self._bar is None and self.seconds >= self._quiet:
            self._widget_wanted = False
            self._start_widget()
        if self._bar is not None:
            if text is not None:
                self._bar.set_postfix_str(self.text, refresh=False)
            if n:
                self._bar.update(n)
            else:
                self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_shown >= HEADLESS_EVERY:
            self._last_shown = now
            self._print(f"{self.label} ({now - self.started:.0f} s){self._tail()}")

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    # -- display -----------------------------------------------------------------------------
    def _start_widget(self) -> None:
        from IPython.display import display
        from tqdm.auto import tqdm

        # Displayed through a handle of our own, so that the end can replace the bar with
        # the plain final line (tqdm's own display would leave a widget in the record).
        self._bar = tqdm(
            total=self.total,
            desc=self.label,
            unit=self.unit,
            leave=False,
            display=False,
            mininterval=0.2,
            bar_format=None if self.total else "{desc}: {n_fmt} {unit} [{elapsed}]{postfix}",
        )
        container = getattr(self._bar, "container", None)
        if container is None:  # tqdm.auto chose a text bar after all
            return
        container.layout.width = "100%"
        if self.total is None:  # tqdm draws a wait of unknown length as a tiny full bar
            container.children[1].layout.width = "160px"
            container.children[1].layout.min_width = "160px"
        self._handle = display(container, display_id=True)

    def _end(self, error: BaseException | None) -> None:
        took = self.seconds
        shown = self._bar is not None or self._last_shown > self.started
        if error is None and not shown and took < self._quiet:
            return
        if error is None:
            final = f"{self.label}: done in {took:.0f} s"
        else:
            why = (str(error).splitlines() or [type(error).__name__])[0]
            final = f"{self.label}: failed after {took:.0f} s: {_short(why)}"
        if self._bar is not None:
            self._bar.leave = False
            self._bar.close()
            if self._handle is not None:
                self._handle.update({"text/plain": final}, raw=True)
                self._bar.container.close()
                return
        self._print(final)

    def _tail(self) -> str:
        return f": {self.text}" if self.text else ""

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)


_WHERE = threading.local()


@contextmanager
def on_host(name: str) -> Iterator[None]:
    """Label this thread's progress with the host it works on (a step on each host runs
    one thread per host, and their bars show side by side)."""
    _WHERE.name = name
    try:
        yield
    finally:
        _WHERE.name = None


@contextmanager
def activity(
    label: str, total: float | None = None, unit: str = "it", quiet: float = 0.0
) -> Iterator[Activity]:
    """Show progress while the block runs; end with one plain line. See the module doc.
    With ``quiet``, a block that ends within that many seconds shows nothing."""
    where = getattr(_WHERE, "name", None)
    label = f"{where}: {label}" if where else label
    act = Activity(label, total, unit, widget=interactive(), out=sys.stdout, quiet=quiet)
    try:
        yield act
    except BaseException as exc:
        act._end(exc)
        raise
    act._end(None)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"
