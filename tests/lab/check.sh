#!/usr/bin/env bash
# Check that the lab is usable: each user reaches Docker the way the runbook will, remote
# commands start fast, and the lab's images work. Read-only except for one short-lived
# registry container. Exits non-zero on the first failed check.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/common.sh"
lab_need_root
lab_apt_install curl

CHECK_CONTAINER=runbook-lab-check-registry-$$
PASSWORD_FILE=$LAB_DIR/client/deploy.password
work=$(mktemp -d)
cleanup() {
    if [ -e "$work/master.sock" ]; then
        ssh -o ControlPath="$work/master.sock" -O exit -p "$LAB_SSH_PORT" "root@$LAB_SSH_HOST" 2>/dev/null || true
    fi
    docker rm -f -v "$CHECK_CONTAINER" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

checks=0
ok() {
    checks=$((checks + 1))
    lab_log "ok: $*"
}
fail() {
    lab_die "check failed: $*"
}

v=$(lab_ssh root docker version --format '{{.Server.Version}}' </dev/null) || fail "root: docker version over ssh"
ok "root over ssh: docker version (server $v)"

v=$(lab_ssh nopass sudo -n docker info --format '{{.ServerVersion}}' </dev/null) || fail "nopass: sudo -n docker info"
ok "nopass: sudo -n docker info (server $v)"

if lab_ssh nopass docker ps >/dev/null 2>&1 </dev/null; then fail "nopass reaches docker without sudo"; fi
ok "nopass: docker without sudo is refused"

v=$(lab_ssh deploy "sudo -S -p '' docker info --format '{{.ServerVersion}}'" <"$PASSWORD_FILE") ||
    fail "deploy: sudo with password"
ok "deploy: key login, sudo -S with the password (server $v)"

if lab_ssh deploy sudo -n true >/dev/null 2>&1 </dev/null; then fail "deploy: sudo did not ask for a password"; fi
ok "deploy: sudo -n is refused (a password is required)"

# Password login: ssh reads the password from an askpass helper, so it is never shown.
printf '#!/bin/sh\nexec cat %q\n' "$PASSWORD_FILE" >"$work/askpass"
chmod 0700 "$work/askpass"
who=$(SSH_ASKPASS="$work/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none \
    ssh -F none -o PubkeyAuthentication=no -o PreferredAuthentications=password \
    -o NumberOfPasswordPrompts=1 -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -p "$LAB_SSH_PORT" "deploy@$LAB_SSH_HOST" id -un </dev/null) ||
    fail "deploy: password login"
[ "$who" = deploy ] || fail "deploy: password login ran as '$who'"
ok "deploy: password login"

# The remote shell's start-up, measured over one multiplexed connection.
ssh -F none -i "$LAB_SSH_KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ControlMaster=yes -o ControlPath="$work/master.sock" \
    -o ControlPersist=60 -fN -p "$LAB_SSH_PORT" "root@$LAB_SSH_HOST" </dev/null
start=$(date +%s%N)
for _ in 1 2 3 4 5 6 7 8 9 10; do
    ssh -o ControlPath="$work/master.sock" -p "$LAB_SSH_PORT" "root@$LAB_SSH_HOST" true </dev/null
done
ms=$(( ($(date +%s%N) - start) / 10000000 ))
# Seconds, not milliseconds, are what a slow ~/.bashrc costs; a busy machine may take 100 ms.
[ "$ms" -lt 300 ] || fail "a trivial remote command takes ${ms} ms (root's ~/.bashrc not replaced?)"
ok "trivial remote command: ${ms} ms"

out=$(docker run --rm hello-world:latest) || fail "docker run hello-world"
[ "$out" = "Hello from Docker!" ] || fail "hello-world printed '$out'"
ok "hello-world runs"

# A port Docker chooses: nothing else on this machine can hold it.
docker run -d --name "$CHECK_CONTAINER" -p 127.0.0.1::5000 registry:2 >/dev/null ||
    fail "docker run registry:2"
CHECK_PORT=$(docker port "$CHECK_CONTAINER" 5000/tcp | head -n 1)
CHECK_PORT=${CHECK_PORT##*:}
registry_answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CHECK_PORT/v2/")" = 200 ]
}
if ! lab_wait -t 15 registry_answers; then
    docker logs "$CHECK_CONTAINER" 2>&1 | tail -n 10 >&2
    fail "registry:2 does not answer 200 on http://127.0.0.1:$CHECK_PORT/v2/"
fi
docker rm -f -v "$CHECK_CONTAINER" >/dev/null
ok "registry:2 serves /v2/ (200)"

lab_log "lab check: all $checks checks ok"
