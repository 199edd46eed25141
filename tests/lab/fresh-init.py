#!/usr/bin/python3
"""PID 1 of the lab's fresh host (tests/lab/fresh-host.sh copies it to /usr/local/sbin/fresh-init).

There is no systemd on the fresh host: this init behaves like a tiny SysV init.

- boot: runs `/etc/init.d/<name> start` for every /etc/rc2.d/S* link (Debian's multi-user
  runlevel), in order. At first that is only ssh; once the runbook installs docker.io, whose
  package enables /etc/init.d/docker there, Docker starts again at every boot, as on a real host.
- then reaps every orphan that ends (it is PID 1 of its PID namespace).
- SIGTERM/SIGINT (fresh-host.sh down): runs `/etc/init.d/<name> stop` for the same scripts in
  reverse order, sends SIGTERM to all that is left, waits, then SIGKILL, and exits; the kernel
  then ends the PID namespace.

It writes progress lines to its standard output (fresh-host.sh sends them to a log file).
"""

import glob
import os
import signal
import struct
import subprocess
import sys
import time

ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
SCRIPT_TIMEOUT = 90
GRACE = 20

stopping = False


def log(msg):
    print(f"fresh-init: {time.strftime('%H:%M:%S')} {msg}", flush=True)


def reap(*_):
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def write_runlevel(level, previous="N"):
    """A RUN_LVL record in /run/utmp, as sysvinit writes it: `runlevel` (systemd-sysv's too)
    reads it, and invoke-rc.d, so every package's postinst, starts a service only when the
    current runlevel has its S link."""
    # struct utmp (glibc, x86_64 and most 64-bit ABIs): 384 bytes.
    now = time.time()
    rec = struct.pack(
        "<hxxi32s4s32s256shhiii16s20x",
        1,  # RUN_LVL
        ord(level) + 256 * ord(previous),
        b"~",
        b"~~",
        b"runlevel",
        os.uname().release.encode(),
        0,
        0,
        0,
        int(now),
        int((now % 1) * 1e6),
        b"",
    )
    assert len(rec) == 384
    with open("/run/utmp", "wb") as f:
        f.write(rec)
    os.chmod("/run/utmp", 0o664)


def on_stop(signum, _frame):
    global stopping
    stopping = True


def cgroup2_delegate():
    """On a cgroup v2 only host, move out of the namespace's root cgroup and hand its
    controllers to children, so that a container engine can create cgroups below it."""
    root = "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(root, "cgroup.subtree_control")):
        return
    try:
        os.makedirs(os.path.join(root, "init"), exist_ok=True)
        with open(os.path.join(root, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(os.path.join(root, "init", "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass
        with open(os.path.join(root, "cgroup.controllers")) as f:
            controllers = f.read().split()
        for c in controllers:
            try:
                with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                    f.write("+" + c)
            except OSError as e:
                log(f"cgroup v2: cannot delegate {c}: {e}")
    except OSError as e:
        log(f"cgroup v2 delegation failed: {e}")


def run_script(argv):
    """Run an init script and wait for it, reaping every other child meanwhile (a daemon that
    an init script stops becomes this init's zombie: it must go for the script to see it gone)."""
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=dict(os.environ))
    except OSError as e:
        log(f"{' '.join(argv)}: {e}")
        return
    deadline = time.monotonic() + SCRIPT_TIMEOUT
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode != 0:
                log(f"{' '.join(argv)}: exit status {p.returncode}")
            return
        if pid == 0:
            if time.monotonic() > deadline:
                log(f"{' '.join(argv)}: still running after {SCRIPT_TIMEOUT}s, going on")
                return
            time.sleep(0.05)


def rc_scripts():
    """The init scripts of runlevel 2, in boot order."""
    scripts = []
    for link in sorted(glob.glob("/etc/rc2.d/S*")):
        script = os.path.join("/etc/init.d", os.path.basename(link)[3:])
        if os.access(script, os.X_OK):
            scripts.append(script)
    return scripts


def others_alive():
    try:
        os.kill(-1, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def shutdown():
    log("stopping")
    write_runlevel("0", "2")
    os.environ.update({"RUNLEVEL": "0", "PREVLEVEL": "2"})
    for script in reversed(rc_scripts()):
        log(f"{script} stop")
        run_script([script, "stop"])
    try:
        os.kill(-1, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + GRACE
    while others_alive() and time.monotonic() < deadline:
        reap()
        time.sleep(0.2)
    if others_alive():
        log("sending SIGKILL to what is left")
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
        reap()
    log("halted")
    sys.exit(0)


def main():
    os.umask(0o022)
    os.chdir("/")
    for d, mode in (("/run/lock", 0o1777), ("/run/sshd", 0o755)):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
    write_runlevel("2")
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    cgroup2_delegate()
    log("booting (runlevel 2)")
    os.environ.clear()
    os.environ.update(ENV)
    os.environ.update({"RUNLEVEL": "2", "PREVLEVEL": "N"})
    for script in rc_scripts():
        log(f"{script} start")
        run_script([script, "start"])
    log("up")
    signal.signal(signal.SIGCHLD, reap)
    while not stopping:
        reap()
        time.sleep(1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    shutdown()


if __name__ == "__main__":
    main()
