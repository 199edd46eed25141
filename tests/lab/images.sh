#!/usr/bin/env bash
# Make sure the two images the tutorial needs exist in the engine, built from Debian packages
# because no image can be pulled here:
#   hello-world:latest  busybox-static's busybox printing "Hello from Docker!"
#   registry:2          Debian's docker-registry (the upstream registry, distribution 2.8) with
#                       a config.yml like the official image's
# Images that already exist are left alone.
#
#   images.sh            build what is missing
#   images.sh save DIR   also write DIR/hello-world.tar and DIR/registry-2.tar (docker save)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
lab_need_root

usage() {
    echo "usage: ${0##*/} [save DIR]" >&2
    exit 2
}

case ${1:-} in
    "") save_dir="" ;;
    save) [ $# -eq 2 ] || usage; save_dir=$2 ;;
    *) usage ;;
esac

export DOCKER_BUILDKIT=0

if ! timeout 10 docker version >/dev/null 2>&1; then
    if [ -n "${DOCKER_HOST:-}" ]; then
        lab_die "the docker engine at DOCKER_HOST=$DOCKER_HOST does not answer"
    fi
    bash "$LAB_SCRIPTS/engine.sh"
fi

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# docker_build TAG CONTEXT: a quiet legacy build; its output is shown only when it fails.
docker_build() {
    if ! docker build -q -t "$1" "$2" >"$work/build.log" 2>&1; then
        tail -n 30 "$work/build.log" >&2
        lab_die "docker build of $1 failed"
    fi
}

build_hello_world() {
    lab_apt_install busybox-static
    local ctx=$work/hello-world
    mkdir -p "$ctx"
    cp /bin/busybox "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
CMD ["/bin/busybox", "echo", "Hello from Docker!"]
DOCKERFILE
    docker_build hello-world:latest "$ctx"
}

build_registry() {
    lab_apt_install docker-registry
    local ctx=$work/registry lib
    mkdir -p "$ctx/root/usr/bin" "$ctx/root/etc/docker/registry" "$ctx/root/var/lib/registry" "$ctx/root/tmp"
    chmod 1777 "$ctx/root/tmp"
    cp /usr/bin/docker-registry "$ctx/root/usr/bin/registry"
    # The binary needs only the C library and the dynamic loader; copy what ldd names.
    for lib in $(ldd /usr/bin/docker-registry | grep -o '/[^ ]*'); do
        mkdir -p "$ctx/root$(dirname "$lib")"
        cp -L "$lib" "$ctx/root$lib"
    done
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$ctx/root/etc/ssl/certs"
        cp /etc/ssl/certs/ca-certificates.crt "$ctx/root/etc/ssl/certs/"
    fi
    cat >"$ctx/root/etc/docker/registry/config.yml" <<'CONFIG'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
CONFIG
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/usr/bin/registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
DOCKERFILE
    docker_build registry:2 "$ctx"
}

if image_exists hello-world:latest; then
    lab_log "image hello-world:latest: present"
else
    lab_log "image hello-world:latest: building from busybox-static"
    build_hello_world
fi

if image_exists registry:2; then
    lab_log "image registry:2: present"
else
    lab_log "image registry:2: building from docker-registry"
    build_registry
fi

if [ -n "$save_dir" ]; then
    mkdir -p "$save_dir"
    for pair in hello-world:latest=hello-world.tar registry:2=registry-2.tar; do
        image=${pair%%=*}
        file=$save_dir/${pair#*=}
        # Write beside the target, then rename, so a reader never sees half a file.
        docker save -o "$file.partial" "$image"
        mv -f "$file.partial" "$file"
    done
    lab_log "saved hello-world.tar and registry-2.tar in $save_dir"
fi
