#!/usr/bin/env bash
# Bring the local target back to "Docker installed, no swarm, no runbook files":
# leave the swarm, remove the runbook's work dir (/home/docker), its registry certificates
# under /etc/docker/certs.d, stopped containers, volumes of removed stacks, the login to the
# local registry and images tagged for it. The lab's own images and the engine stay.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/common.sh"
lab_need_root

REGISTRIES=(localhost:5000 127.0.0.1:5000)

if ! timeout 10 docker version >/dev/null 2>&1; then
    bash "$here/engine.sh"
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" != inactive ]; then
    lab_log "leaving the swarm (state: $state)"
    docker swarm leave --force >/dev/null
fi

no_task_containers() {
    [ -z "$(docker ps -aq --filter label=com.docker.swarm.task.id)" ]
}
if ! lab_wait -t 30 no_task_containers; then
    lab_log "removing leftover swarm task containers"
    docker ps -aq --filter label=com.docker.swarm.task.id | xargs -r docker rm -f >/dev/null
fi
docker container prune -f >/dev/null
# Created by swarm init; a fresh engine has none (swarm init makes it again).
if [ "$state" != inactive ] && docker network inspect docker_gwbridge >/dev/null 2>&1; then
    docker network rm docker_gwbridge >/dev/null 2>&1 || lab_log "docker_gwbridge is still in use; left in place"
fi
docker volume ls -q --filter label=com.docker.stack.namespace | xargs -r docker volume rm >/dev/null || true

rm -rf /home/docker
for registry in "${REGISTRIES[@]}"; do
    docker logout "$registry" >/dev/null 2>&1 || true
done
# Docker's trust for the registry under every name and port the tests give it (127.0.0.x,
# localhost; 5000, 5002), also what a run stopped half-way left.
rm -rf /etc/docker/certs.d/localhost:* /etc/docker/certs.d/127.0.0.*:*

# Images the runbook tagged, pushed or pulled through the local registry.
refs=$(docker image ls --digests --format '{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}' |
    while read -r repo tag digest id; do
        for registry in "${REGISTRIES[@]}"; do
            case $repo in
                "$registry"/*)
                    if [ "$tag" != "<none>" ]; then echo "$repo:$tag"
                    elif [ "$digest" != "<none>" ]; then echo "$repo@$digest"
                    else echo "$id"
                    fi ;;
            esac
        done
    done | sort -u)
if [ -n "$refs" ]; then
    # shellcheck disable=SC2086 # one reference per word
    docker image rm $refs >/dev/null
fi
lab_log "local target reset: docker installed, no swarm, no runbook files"
