#!/usr/bin/env bash
# The lab's SSH target: this machine, reached as a remote host on 127.0.0.1:2222.
#
#   target.sh up      install openssh-server and sudo, create keys and users, start sshd
#   target.sh down    stop the lab's sshd (keys, users and packages stay for the next up)
#   target.sh status  say whether it runs and how to reach it
#
# Server:  its own sshd_config and ed25519 host key under $LAB_DIR/sshd/, key-only, UsePAM no,
#          started in a private mount namespace where root's ~/.bashrc is Debian's stock one
#          (so remote commands do not pay for this machine's interactive shell set-up).
# Client:  $LAB_DIR/client/id_ed25519, known_hosts, deploy.password, registry-admin.password,
#          portainer-admin.password.
# Users:   root (key), deploy (key or password; sudo asks for the same password),
#          nopass (key; sudo without password). Neither is in the docker group.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
lab_need_root

SSHD_DIR=$LAB_DIR/sshd
CLIENT_DIR=$LAB_DIR/client
SSHD_CONFIG=$SSHD_DIR/sshd_config
SSHD_HOST_KEY=$SSHD_DIR/ssh_host_ed25519_key
SSHD_KEYS_DIR=$SSHD_DIR/authorized_keys
SSHD_LOG=$SSHD_DIR/sshd.log
SSHD_PIDFILE=/run/runbook-lab-sshd.pid
DEPLOY_PASSWORD_FILE=$CLIENT_DIR/deploy.password
NOPASS_SUDOERS=/etc/sudoers.d/runbook-lab-nopass

usage() {
    echo "usage: ${0##*/} up|down|status" >&2
    exit 2
}

sshd_pid() {
    lab_pidfile_pid "$SSHD_PIDFILE" sshd
}

# write_if_changed FILE MODE: replace FILE with stdin when the content differs; 0 if it changed.
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        # Keep the mode right even when the content is.
        chmod "$mode" "$file"
        return 1
    fi
    mv -f "$tmp" "$file"
}

make_keys() {
    install -d -m 0755 "$SSHD_DIR" "$SSHD_KEYS_DIR"
    install -d -m 0700 "$CLIENT_DIR"
    if [ ! -f "$SSHD_HOST_KEY" ]; then
        ssh-keygen -q -t ed25519 -N '' -C runbook-lab-host -f "$SSHD_HOST_KEY"
    fi
    if [ ! -f "$LAB_SSH_KEY" ]; then
        ssh-keygen -q -t ed25519 -N '' -C runbook-lab-client -f "$LAB_SSH_KEY"
    fi
    local type key _
    read -r type key _ <"$SSHD_HOST_KEY.pub"
    # Replace this target's lines, keep the others (the fresh host adds its own).
    {
        if [ -f "$LAB_SSH_KNOWN_HOSTS" ]; then
            awk -v a="[$LAB_SSH_HOST]:$LAB_SSH_PORT" -v b="[localhost]:$LAB_SSH_PORT" \
                '$1 != a && $1 != b' "$LAB_SSH_KNOWN_HOSTS"
        fi
        printf '[%s]:%s %s %s\n[localhost]:%s %s %s\n' \
            "$LAB_SSH_HOST" "$LAB_SSH_PORT" "$type" "$key" "$LAB_SSH_PORT" "$type" "$key"
    } | write_if_changed "$LAB_SSH_KNOWN_HOSTS" 0644 || true
}

make_users() {
    local user
    for user in deploy nopass; do
        if ! id "$user" >/dev/null 2>&1; then
            lab_log "creating user $user"
            useradd --create-home --shell /bin/bash "$user"
        fi
        # The runbook must reach Docker through sudo, so neither user may be in the docker group.
        case " $(id -nG "$user") " in
            *" docker "*) gpasswd -d "$user" docker >/dev/null ;;
        esac
        write_if_changed "$SSHD_KEYS_DIR/$user" 0644 <"$LAB_SSH_KEY.pub" || true
    done
    write_if_changed "$SSHD_KEYS_DIR/root" 0644 <"$LAB_SSH_KEY.pub" || true

    # deploy: in group sudo (Debian's sudoers asks for the user's password), with a random
    # password kept for the tests, never printed.
    usermod -a -G sudo deploy
    if [ ! -s "$DEPLOY_PASSWORD_FILE" ]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' | tr -d '\n' >"$DEPLOY_PASSWORD_FILE")
    fi
    chmod 0600 "$DEPLOY_PASSWORD_FILE"
    printf 'deploy:%s\n' "$(cat "$DEPLOY_PASSWORD_FILE")" | chpasswd
    # The registry's and Portainer's admin passwords for the parameters files (file: references).
    local secret
    for secret in registry-admin portainer-admin; do
        if [ ! -s "$CLIENT_DIR/$secret.password" ]; then
            (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' | tr -d '\n' >"$CLIENT_DIR/$secret.password")
        fi
    done

    # nopass: key only. '*' rather than useradd's '!': with UsePAM no, sshd refuses every
    # login, keys included, to an account whose password is locked with '!'.
    usermod -p '*' nopass
    printf '# Written by the runbook lab (tests/lab/target.sh).\nnopass ALL=(ALL:ALL) NOPASSWD: ALL\n' |
        write_if_changed "$NOPASS_SUDOERS" 0440 || true
    visudo -c -q -f "$NOPASS_SUDOERS" >/dev/null || lab_die "$NOPASS_SUDOERS does not parse"
}

# Write sshd_config; 0 if it changed.
write_sshd_config() {
    write_if_changed "$SSHD_CONFIG" 0644 <<CONFIG
# The runbook lab's sshd (tests/lab/target.sh): a stand-in for a remote host.
ListenAddress $LAB_SSH_HOST:$LAB_SSH_PORT
HostKey $SSHD_HOST_KEY
PidFile $SSHD_PIDFILE
AuthorizedKeysFile $SSHD_KEYS_DIR/%u
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitEmptyPasswords no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp

Match User deploy
    PasswordAuthentication yes
CONFIG
}

start_sshd() {
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
    local err
    if ! err=$(/usr/sbin/sshd -t -f "$SSHD_CONFIG" 2>&1); then
        printf '%s\n' "$err" >&2
        lab_die "sshd rejects $SSHD_CONFIG"
    fi
    rm -f "$SSHD_PIDFILE"
    lab_log "starting sshd on $LAB_SSH_HOST:$LAB_SSH_PORT (log: $SSHD_LOG)"
    # A private mount namespace (slave, so the engine's mounts still show) in which root's
    # ~/.bashrc is the stock one: this machine's own runs 'pyenv init' on every remote command.
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation slave -- /bin/sh -c '
        if [ -f /root/.bashrc ] && [ -f /etc/skel/.bashrc ]; then
            mount --bind /etc/skel/.bashrc /root/.bashrc || exit 1
        fi
        exec /usr/sbin/sshd -f "$1" -E "$2"
    ' sh "$SSHD_CONFIG" "$SSHD_LOG" </dev/null || {
        tail -n 20 "$SSHD_LOG" >&2 || true
        lab_die "sshd did not start"
    }
    if ! lab_wait -t 15 lab_ssh root true; then
        tail -n 20 "$SSHD_LOG" >&2 || true
        lab_die "sshd on $LAB_SSH_HOST:$LAB_SSH_PORT does not accept the lab key for root (see $SSHD_LOG)"
    fi
}

up() {
    # apache2-utils: htpasswd, for the tutorial's own commands (benchmarks/floor.sh).
    lab_apt_install openssh-server sudo apache2-utils
    make_keys
    make_users
    local changed=0
    write_sshd_config && changed=1
    if [ -n "$(sshd_pid)" ]; then
        if [ "$changed" = 1 ]; then
            lab_log "sshd_config changed: restarting sshd"
            lab_stop_pidfile "$SSHD_PIDFILE" sshd 10
            start_sshd
        elif lab_ssh root true >/dev/null 2>&1; then
            lab_log "ssh target: already running on $LAB_SSH_HOST:$LAB_SSH_PORT"
        else
            lab_log "sshd runs but does not answer: restarting it"
            lab_stop_pidfile "$SSHD_PIDFILE" sshd 10
            start_sshd
        fi
    else
        start_sshd
    fi
}

down() {
    if [ -n "$(sshd_pid)" ]; then
        lab_log "stopping sshd"
        lab_stop_pidfile "$SSHD_PIDFILE" sshd 10
    else
        rm -f "$SSHD_PIDFILE"
        lab_log "ssh target: not running"
    fi
}

status() {
    local pid
    pid=$(sshd_pid)
    if [ -n "$pid" ]; then
        echo "ssh target: running (sshd pid $pid) on $LAB_SSH_HOST:$LAB_SSH_PORT"
    else
        echo "ssh target: stopped"
    fi
    echo "users:       root, deploy (password in $DEPLOY_PASSWORD_FILE, sudo asks for it), nopass (sudo without password)"
    echo "key:         $LAB_SSH_KEY"
    echo "known_hosts: $LAB_SSH_KNOWN_HOSTS"
    [ -n "$pid" ]
}

[ $# -eq 1 ] || usage
case $1 in
    up) up ;;
    down) down ;;
    status) status ;;
    *) usage ;;
esac
