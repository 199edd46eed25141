"""One IPython kernel, and one client of it, for every notebook of a run.

Starting a kernel and importing the library cost about a second per notebook, and
connecting a client to a kernel a quarter of one; sharing both pays that once, and lets the
notebooks share the SSH connection too. Before each notebook the kernel's namespace and
execution count are reset, so every executed notebook reads as if it ran alone.

The kernel is the slowest thing to start, so it is started first, before this process
imports jupyter_client (0.2 s) and papermill: the process is spawned here with the standard
library alone, from a connection file written here, and jupyter_client is then only asked to
connect to it. It talks over Unix sockets in a private folder: TCP ports on loopback would
be open to every local user.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

RUN_DIR_ENV = "RUNBOOK_RUN_DIR"  # where a notebook may leave files for the run (ca.crt)
PRECONNECT_ENV = "RUNBOOK_PRECONNECT"  # the run's parameters file (context.preconnect)
GO_ENV = "RUNBOOK_PRECONNECT_GO"  # a file that appears once the parameters are accepted

# Run while the kernel boots, in parallel with this process: import every step module, and
# start connecting to the host (runbook_lib.context.preconnect).
WARM_UP = (
    "import runbook_lib.context, "
    + ", ".join(
        f"runbook_lib.{m}"
        for m in (
            "preflight",
            "engine",
            "compose",
            "swarm",
            "certs",
            "users",
            "registry",
            "verify",
            "portainer",
        )
    )
    + "; runbook_lib.context.preconnect()"
)

# IPython's own reset, without the %reset magic's garbage collection (0.1 s a notebook; the
# interpreter collects on its own schedule). The kernel keeps no output cache (Out, _1…),
# whose flush would collect too.
_RESET = "get_ipython().reset(new_session=False)\nget_ipython().execution_count = 1"


class KernelDied(RuntimeError):
    def __init__(self, code: int | None):
        super().__init__(f"the run's kernel has stopped (exit code {code}); see the last notebook")


_PREFIX = "runbook-kernel-"


def sweep(tmp: str | None = None) -> list[str]:
    """Remove the kernel folders of runs that ended without cleaning up (killed, or the
    machine lost power): those whose run's process is gone. Returns what was removed."""
    root = tmp or tempfile.gettempdir()
    removed = []
    for name in os.listdir(root):
        folder = os.path.join(root, name)
        if not name.startswith(_PREFIX) or os.path.islink(folder) or not os.path.isdir(folder):
            continue
        try:
            if os.stat(folder).st_uid != os.getuid():
                continue  # another user's run: not ours to judge
            with open(os.path.join(folder, "owner")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue  # being made right now, or not one of ours
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedKernel:
    def __init__(self, cwd: str, env: dict[str, str] | None = None):
        sweep()
        self._folder = tempfile.mkdtemp(prefix=_PREFIX)
        with open(os.path.join(self._folder, "owner"), "w") as f:
            f.write(str(os.getpid()))
        self._connection_file = os.path.join(self._folder, "kernel.json")
        info = {
            "transport": "ipc",
            "ip": os.path.join(self._folder, "kernel"),
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": secrets.token_hex(32),
            "signature_scheme": "hmac-sha256",
            "kernel_name": "python3",
        }
        fd = os.open(self._connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        # As jupyter_client launches a kernel: its own session (so that an interrupt reaches
        # only it), and the parent's pid, so that it ends if this process dies.
        self._go = os.path.join(self._folder, "go")
        env = {**(env or os.environ), GO_ENV: self._go}
        try:
            self._proc = self._spawn(cwd, env)
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self._km = None
        self._client = None

    def go(self) -> None:
        """The run's parameters and secrets are accepted: the kernel may connect to the host."""
        with open(self._go, "x"):
            pass

    def _spawn(self, cwd: str, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ipykernel_launcher",
                "-f",
                self._connection_file,
                # No input history: counts restart at 1 for each notebook, which a history
                # database would refuse (and say so in the notebook's output).
                "--HistoryManager.enabled=False",
                "--InteractiveShell.cache_size=0",
                f"--IPKernelApp.exec_lines={WARM_UP}",
            ],
            cwd=cwd,
            env={**env, "JPY_PARENT_PID": str(os.getpid())},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def km(self):
        """A kernel manager for papermill that connects to this kernel and never starts one."""
        if self._km is None:
            self._km = _manager_class(self)(connection_file=self._connection_file)
            self._km.load_connection_file()
        return self._km

    def _run_sync(self, coro_fn):
        from jupyter_core.utils import run_sync

        return run_sync(coro_fn)

    def ready(self, timeout: float = 60) -> None:
        """Wait until the kernel answers."""

        async def connect():
            kc = self.km.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=timeout)

        self._run_sync(connect)()

    def fresh(self, run_dir: str) -> None:
        """Forget the previous notebook's variables; tell the next where the run folder is."""
        if not self.alive():
            raise KernelDied(self._proc.returncode)
        code = f"{_RESET}\nimport os\nos.environ[{RUN_DIR_ENV!r}] = {run_dir!r}\ndel os"
        self._run_sync(self._client.execute_interactive)(
            code, store_history=False, timeout=60, output_hook=lambda msg: None
        )

    def alive(self) -> bool:
        return self._proc.poll() is None

    def interrupt(self) -> None:
        if self.alive():
            os.killpg(self._proc.pid, signal.SIGINT)

    def close(self) -> None:
        """Stop the kernel (it holds nothing that needs a graceful end) and remove its folder."""
        if self._client is not None:
            self._client.stop_channels()
        if self.alive():
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        shutil.rmtree(self._folder, ignore_errors=True)


def _manager_class(shared: SharedKernel):
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    class SharedClient(AsyncKernelClient):
        """A client that may be started and readied again: the second time is a no-op."""

        _ready = False

        def start_channels(self, *args, **kwargs) -> None:
            if not self.channels_running:
                super().start_channels(*args, **kwargs)

        async def _async_wait_for_ready(self, timeout=None) -> None:
            if not self._ready:
                await super()._async_wait_for_ready(timeout=timeout)
                self._ready = True

        wait_for_ready = _async_wait_for_ready

    class SharedManager(AsyncKernelManager):
        """Papermill and nbclient see a started kernel: they ask it for a client (the shared
        one), whether it lives, and to interrupt it; the kernel's life is ours."""

        @property
        def has_kernel(self) -> bool:
            return shared.alive()

        async def _async_is_alive(self) -> bool:
            return shared.alive()

        is_alive = _async_is_alive

        async def _async_interrupt_kernel(self) -> None:
            shared.interrupt()

        interrupt_kernel = _async_interrupt_kernel

        async def _async_start_kernel(self, **kwargs) -> None:
            # nbclient starts a kernel when it finds none: never another one behind ours.
            raise KernelDied(shared._proc.returncode)

        start_kernel = _async_start_kernel

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False):
            shared.close()

        shutdown_kernel = _async_shutdown_kernel

        def client(self, **kwargs):
            if shared._client is None:
                kwargs.update(self.get_connection_info(session=True))
                kwargs.setdefault("parent", self)
                shared._client = SharedClient(**kwargs)
            return shared._client

    return SharedManager
