# shellcheck shell=bash
# Helpers shared by the lab scripts. Source it; it does not change shell options.
#
#   LAB_DIR                 where the lab keeps its state (default /var/lib/runbook-lab)
#   lab_log MSG...          one progress line on stderr
#   lab_die MSG...          an error line on stderr, then exit 1
#   lab_apt_install PKG...  install the Debian packages that are missing, without starting daemons
#   lab_wait [-t SECONDS] [-i INTERVAL] CMD...
#                           run CMD until it succeeds; 1 after the timeout (LAB_WAIT_TIMEOUT, 30 s)

LAB_DIR=${LAB_DIR:-/var/lib/runbook-lab}
LAB_SCRIPTS=${LAB_SCRIPTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
# apt lists older than this many seconds are refreshed before an install.
LAB_APT_MAX_AGE=${LAB_APT_MAX_AGE:-86400}

lab_log() {
    printf '[lab] %s\n' "$*" >&2
}

lab_die() {
    printf '[lab] ERROR: %s\n' "$*" >&2
    exit 1
}

lab_need_root() {
    [ "$(id -u)" = 0 ] || lab_die "${0##*/} must run as root (it installs packages and starts daemons)"
}

# lab_wait [-t SECONDS] [-i INTERVAL] CMD...: poll CMD (output discarded) until it succeeds.
lab_wait() {
    local timeout=${LAB_WAIT_TIMEOUT:-30} interval=0.2
    while [ $# -gt 0 ]; do
        case $1 in
            -t) timeout=$2; shift 2 ;;
            -i) interval=$2; shift 2 ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    [ $# -gt 0 ] || lab_die "lab_wait: no command given"
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep "$interval"
    done
}

# True when the Debian package is installed and configured.
lab_pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# True when the apt lists are missing or older than LAB_APT_MAX_AGE.
_lab_apt_lists_stale() {
    local newest
    newest=$(find /var/lib/apt/lists -maxdepth 1 -type f \( -name '*Packages*' -o -name '*InRelease' -o -name '*Release' \) \
        -printf '%T@\n' 2>/dev/null | sort -n | tail -n 1)
    if [ -f "$LAB_DIR/apt-update.stamp" ]; then
        local stamp
        stamp=$(stat -c %Y "$LAB_DIR/apt-update.stamp")
        if [ -z "$newest" ] || [ "$stamp" -gt "${newest%.*}" ]; then newest=$stamp; fi
    fi
    [ -z "$newest" ] && return 0
    [ $(( $(date +%s) - ${newest%.*} )) -gt "$LAB_APT_MAX_AGE" ]
}

_lab_apt_update() {
    lab_log "apt-get update"
    local log
    log=$(mktemp)
    if ! apt-get -o DPkg::Lock::Timeout=600 update >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        lab_die "apt-get update failed"
    fi
    rm -f "$log"
    mkdir -p "$LAB_DIR"
    touch "$LAB_DIR/apt-update.stamp"
    export LAB_APT_UPDATED=1
}

# Install with a policy-rc.d that forbids starting services (postinst scripts would start
# their own sshd or dockerd otherwise). Runs in a subshell so that the trap stays local.
_lab_apt_get_install() (
    local policy=/usr/sbin/policy-rc.d saved=""
    if [ -e "$policy" ]; then
        saved=$(mktemp)
        cp -p "$policy" "$saved"
    fi
    # shellcheck disable=SC2317 # called by the trap
    restore() {
        if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
    }
    trap restore EXIT
    printf '#!/bin/sh\n# Written by the runbook lab during apt-get install: start no services.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        install -y --no-install-recommends "$@"
)

lab_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        lab_pkg_installed "$pkg" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "${LAB_APT_UPDATED:-}" ] && _lab_apt_lists_stale; then
        _lab_apt_update
    fi
    lab_log "installing ${missing[*]}"
    local log
    log=$(mktemp)
    if ! _lab_apt_get_install "${missing[@]}" >"$log" 2>&1; then
        if [ -z "${LAB_APT_UPDATED:-}" ]; then
            # Lists may name versions the mirror no longer has: refresh once and retry.
            _lab_apt_update
            if _lab_apt_get_install "${missing[@]}" >"$log" 2>&1; then
                rm -f "$log"
                return 0
            fi
        fi
        tail -n 30 "$log" >&2
        rm -f "$log"
        lab_die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$log"
}

# Signal the process named in PIDFILE if it is still the program we expect, wait for it to end.
# lab_stop_pidfile PIDFILE COMM [TIMEOUT]
lab_stop_pidfile() {
    local pidfile=$1 comm=$2 timeout=${3:-30} pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && ! _lab_pid_gone "$pid" "$comm"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! lab_wait -t "$timeout" _lab_pid_gone "$pid" "$comm"; then
            lab_log "$comm (pid $pid) did not exit within ${timeout}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            lab_wait -t 10 _lab_pid_gone "$pid" "$comm" || lab_die "$comm (pid $pid) does not exit"
        fi
    fi
    rm -f "$pidfile"
}

# Gone, or a zombie waiting for its parent to reap it.
_lab_pid_gone() {
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" != "$2" ] && return 0
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat%% *}" = Z ]
}

# PID from PIDFILE when that process is alive and is COMM; empty otherwise.
lab_pidfile_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    if [ -n "$pid" ] && ! _lab_pid_gone "$pid" "$2"; then
        printf '%s\n' "$pid"
    fi
}

# The lab's SSH target (target.sh) and the client files that reach it.
LAB_SSH_HOST=${LAB_SSH_HOST:-127.0.0.1}
LAB_SSH_PORT=${LAB_SSH_PORT:-2222}
LAB_SSH_KEY=$LAB_DIR/client/id_ed25519
LAB_SSH_KNOWN_HOSTS=$LAB_DIR/client/known_hosts

# lab_ssh USER CMD...: run a command on the lab target as USER with the lab's key, checking its
# host key against the lab's known_hosts. No agent, no user config, no prompts.
lab_ssh() {
    local user=$1
    shift
    ssh -F none -i "$LAB_SSH_KEY" -o IdentitiesOnly=yes -o IdentityAgent=none \
        -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 \
        -p "$LAB_SSH_PORT" -l "$user" "$LAB_SSH_HOST" "$@"
}

# lab_lock DIR SCRIPT: one command of a lab script at a time, on DIR/lock (descriptor 9,
# held until the script ends; daemons it starts get no copy of it).
lab_lock() {
    lab_need_root
    mkdir -p "$1"
    exec 9>>"$1/lock"
    flock -w 300 9 || lab_die "another $2 command holds $1/lock"
}
