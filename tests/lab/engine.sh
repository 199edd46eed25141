#!/usr/bin/env bash
# Install Debian's Docker engine (docker.io) and start dockerd in the root namespace unless an
# engine already answers. There is no init system to rely on: dockerd is started by hand and
# stopped by down.sh through its pidfile.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
lab_need_root

LAB_DOCKERD_PIDFILE=/run/runbook-lab-dockerd.pid
LAB_DOCKERD_LOG=/var/log/runbook-lab-dockerd.log

engine_answers() {
    timeout 10 docker version >/dev/null 2>&1
}

lab_apt_install docker.io

if engine_answers; then
    lab_log "docker engine: already running"
    exit 0
fi

if [ -n "$(lab_pidfile_pid "$LAB_DOCKERD_PIDFILE" dockerd)" ] || [ -n "$(lab_pidfile_pid /var/run/docker.pid dockerd)" ]; then
    lab_log "docker engine: dockerd is starting, waiting for it"
else
    rm -f "$LAB_DOCKERD_PIDFILE"
    lab_log "docker engine: starting dockerd (log: $LAB_DOCKERD_LOG)"
    setsid nohup /usr/sbin/dockerd --pidfile "$LAB_DOCKERD_PIDFILE" >>"$LAB_DOCKERD_LOG" 2>&1 </dev/null &
fi

if ! lab_wait -t "${LAB_DOCKERD_TIMEOUT:-60}" engine_answers; then
    tail -n 20 "$LAB_DOCKERD_LOG" >&2 || true
    lab_die "docker engine does not answer 'docker version' (see $LAB_DOCKERD_LOG)"
fi
lab_log "docker engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}' 2>/dev/null)"
