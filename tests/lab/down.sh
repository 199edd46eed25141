#!/usr/bin/env bash
# Stop what up.sh started: the lab's sshd, then the lab's dockerd (both by pidfile).
# Packages, keys, users, images and whatever the runbook left in the engine stay.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/common.sh"
lab_need_root

bash "$here/target.sh" down

LAB_DOCKERD_PIDFILE=/run/runbook-lab-dockerd.pid
if [ -n "$(lab_pidfile_pid "$LAB_DOCKERD_PIDFILE" dockerd)" ]; then
    lab_log "stopping dockerd (it stops its containers first)"
    lab_stop_pidfile "$LAB_DOCKERD_PIDFILE" dockerd "${LAB_DOCKERD_STOP_TIMEOUT:-90}"
else
    rm -f "$LAB_DOCKERD_PIDFILE"
    if timeout 10 docker version >/dev/null 2>&1; then
        lab_log "docker engine: running, but not started by the lab; left alone"
    else
        lab_log "docker engine: not running"
    fi
fi
lab_log "lab down"
