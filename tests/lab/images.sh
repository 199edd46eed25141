#!/usr/bin/env bash
# Make sure the images the tutorial needs exist in the engine, built from Debian packages
# because no image can be pulled here:
#   hello-world:latest  busybox-static's busybox printing "Hello from Docker!"
#   registry:2          Debian's docker-registry (the upstream registry, distribution 2.8) with
#                       a config.yml like the official image's
#   portainer/portainer-ce:lts, portainer/agent:lts
#                       the stand-in for Portainer's server and agent
#                       (portainer-standin/server.py, see its README.md), run by Debian's
#                       python3 in runbook-lab/debian-python3:bookworm (python3.11 and openssl
#                       from this machine's Debian packages, with the libraries they load)
# Images that already exist are left alone; the two stand-ins are built again when
# server.py changed (their label runbook-lab.standin holds its SHA-256).
#
#   images.sh            build what is missing
#   images.sh save DIR   also write DIR/hello-world.tar, DIR/registry-2.tar,
#                        DIR/portainer-ce-lts.tar and DIR/agent-lts.tar (docker save)
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

# Every file of the packages but their documentation, and every library ldd finds for the
# binaries and the extension modules among them.
build_python_base() {
    local packages="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib openssl"
    # shellcheck disable=SC2086
    lab_apt_install $packages
    local ctx=$work/debian-python3 root f lib
    root=$ctx/root
    mkdir -p "$root/tmp" "$root/usr/bin"
    chmod 1777 "$root/tmp"
    # (tar, not cp -a --parents: coreutils 9.1's fails on some of these paths.)
    # shellcheck disable=SC2086
    dpkg -L $packages | sort -u | while read -r f; do
        case $f in /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/*) continue ;; esac
        if [ -L "$f" ] || [ -f "$f" ]; then
            printf '%s\n' "${f#/}"
        fi
    done >"$ctx/files"
    tar -C / --no-recursion -cf - -T "$ctx/files" | tar -C "$root" -xf -
    ln -sf python3.11 "$root/usr/bin/python3"
    for f in /usr/bin/python3.11 /usr/bin/openssl /usr/lib/python3.11/lib-dynload/*.so; do
        ldd "$f" | grep -o '/[^ ]*' || true  # (none: "statically linked")
    done | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["/usr/bin/python3"]
DOCKERFILE
    docker_build "$PYTHON_BASE" "$ctx"
}

# build_standin TAG MODE: the stand-in's server (MODE "") or agent (MODE agent) on the base.
build_standin() {
    local tag=$1 mode=$2 ctx
    ctx=$work/standin-${mode:-server}
    mkdir -p "$ctx"
    cp "$STANDIN/server.py" "$ctx/server.py"
    if [ -z "$mode" ]; then
        cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $PYTHON_BASE
LABEL runbook-lab.standin=$STANDIN_SUM
COPY server.py /app/server.py
VOLUME ["/data"]
EXPOSE 9000 9443 8000
ENTRYPOINT ["/usr/bin/python3", "/app/server.py"]
DOCKERFILE
    else
        cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $PYTHON_BASE
LABEL runbook-lab.standin=$STANDIN_SUM
COPY server.py /app/server.py
EXPOSE 9001
ENTRYPOINT ["/usr/bin/python3", "/app/server.py", "agent"]
DOCKERFILE
    fi
    docker_build "$tag" "$ctx"
}

# True when TAG is a stand-in built from this server.py.
standin_current() {
    [ "$(docker image inspect -f '{{index .Config.Labels "runbook-lab.standin"}}' "$1" 2>/dev/null)" = "$STANDIN_SUM" ]
}

PYTHON_BASE=runbook-lab/debian-python3:bookworm
STANDIN=$LAB_SCRIPTS/portainer-standin
STANDIN_SUM=$(sha256sum "$STANDIN/server.py" | cut -d' ' -f1)

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

if image_exists "$PYTHON_BASE"; then
    lab_log "image $PYTHON_BASE: present"
else
    lab_log "image $PYTHON_BASE: building from python3.11-minimal, libpython3.11-stdlib and openssl"
    build_python_base
fi

for pair in portainer/portainer-ce:lts= portainer/agent:lts=agent; do
    image=${pair%%=*}
    if standin_current "$image"; then
        lab_log "image $image: present (stand-in)"
    else
        lab_log "image $image: building the stand-in from portainer-standin/server.py"
        build_standin "$image" "${pair#*=}"
        # The stand-in built from the previous server.py, now without a tag.
        docker image prune -f --filter label=runbook-lab.standin >/dev/null
    fi
done

if [ -n "$save_dir" ]; then
    mkdir -p "$save_dir"
    for pair in hello-world:latest=hello-world.tar registry:2=registry-2.tar \
        portainer/portainer-ce:lts=portainer-ce-lts.tar portainer/agent:lts=agent-lts.tar; do
        image=${pair%%=*}
        file=$save_dir/${pair#*=}
        # Write beside the target, then rename, so a reader never sees half a file.
        docker save -o "$file.partial" "$image"
        mv -f "$file.partial" "$file"
    done
    lab_log "saved hello-world.tar, registry-2.tar, portainer-ce-lts.tar and agent-lts.tar in $save_dir"
fi
