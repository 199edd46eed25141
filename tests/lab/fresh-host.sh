#!/usr/bin/env bash
# The lab's fresh host: a Debian bookworm machine WITHOUT Docker, booted in a network namespace
# of this machine and reached over SSH, so that the runbook's install steps (apt-get install
# docker.io, start it, docker run hello-world, swarm init, stack deploy) run for real.
#
#   fresh-host.sh up      boot it: ~1.5 s from the cached root; the first time the root is
#                         built (debootstrap, ~35 s) and the image mirror filled (engine.sh,
#                         images.sh). Already up: says so, refreshes known_hosts, nothing else.
#   fresh-host.sh down    stop it and all this script started (apt-cacher-ng, the mirror, unless
#                         the lab's other hosts, tests/lab/nodes.sh, still use them);
#                         its disk stays, so the next up resumes the same host (Docker, swarm,
#                         files), as after a reboot. The root namespace's engine stays.
#   fresh-host.sh status  say whether it is up and how to reach it (exit 0 only when up)
#   fresh-host.sh reset   down, then discard its disk: the next up boots a fresh host again
#
# Network:  namespace runbook-fresh, a veth to the root namespace (root end 10.204.0.1/24,
#           host end 10.204.0.2/24 as eth0), no default route: it reaches nothing but the
#           two services below. Hostname "fresh", no DNS server (/etc/hosts only).
# SSH:      sshd on 10.204.0.2:22 (Debian's config plus /etc/ssh/sshd_config.d/runbook-lab.conf).
#           root (key only), deploy (key or password; in group sudo, sudo asks for the password),
#           nopass (key; sudo without password): the same client key and password file as the
#           local target ($LAB_DIR/client/id_ed25519, $LAB_DIR/client/deploy.password); the host
#           key is put in $LAB_DIR/client/known_hosts as "10.204.0.2 ssh-ed25519 ...".
# apt:      through apt-cacher-ng on 10.204.0.1:3142 (/etc/apt/apt.conf.d/01proxy), with this
#           machine's Debian sources (over http). The package lists are empty at first, as on a
#           new cloud host: run apt-get update before installing.
# Images:   "Docker Hub" is a registry on 10.204.0.1:5001 (Debian's docker-registry) holding
#           library/hello-world:latest, library/registry:2 and the Portainer stand-ins
#           portainer/portainer-ce:lts and portainer/agent:lts, built by images.sh; the host's
#           /etc/docker/daemon.json, written by the lab before Docker is installed, lists it in
#           registry-mirrors, so "docker pull hello-world" works unmodified. Keep that key when
#           changing daemon.json.
# Init:     systemd and systemd-sysv are installed (as on any Debian server) but do not run:
#           /run/systemd/system is absent and systemctl answers "System has not been booted with
#           systemd". PID 1 is /usr/local/sbin/fresh-init (fresh-init.py), a SysV-style init:
#           runlevel 2 (in /run/utmp), the /etc/rc2.d/S* scripts started at boot (ssh, sudo, and
#           docker once docker.io is installed: its postinst starts it through invoke-rc.d) and
#           stopped in reverse order on down. "service docker start|stop|status" works.
#           The host may not raise its hard nofile limit (nor may this machine):
#           /lib/lsb/init-functions.d/99-runbook-lab-ulimit makes a failing ulimit in init
#           scripts non-fatal, or /etc/init.d/docker would fail.
# Isolation: nsenter --net, then unshare --mount --uts --ipc --pid --cgroup --fork; the root is
#           bind-mounted on itself and pivot_root'ed; fresh proc, sysfs, /dev (devpts, shm,
#           mqueue), /run; every cgroup hierarchy, rooted at a child "runbook-fresh" of this
#           script's own cgroups.
#
# State (under LAB_DIR, default /var/lib/runbook-lab):
#   cache/fresh-bookworm-<hash>.tar.zst  the freshly built root: debootstrap minbase plus
#                   $HOST_PACKAGES below and the users (mode 0600: it holds the SSH host keys)
#   fresh/root      the host's disk: a tmpfs, filled from the cache when it is not mounted. down
#                   keeps it; reset unmounts it; a reboot of this machine loses it (the next up
#                   is then fresh again).
#   fresh/init.pid, fresh/unshare.pid, fresh/cgroups, fresh/console.log (init's output),
#   fresh/build.log   the running host and the last build
#   apt-cacher-ng/  its config, package cache (kept), logs and pidfile
#   mirror/         the registry's config, storage (kept: filled once), log and pidfile
#
# Environment: LAB_DIR; FRESH_REBUILD=1 rebuilds the cached root; FRESH_ULIMIT_FIX=0 leaves
# out the ulimit file (to see how the runbook reports a docker start failure).
#
# Instances: without the variables below this script is the fresh host above. With them it
# boots another host from the same cached root (tests/lab/nodes.sh boots three):
#   FRESH_NS (namespace, cgroup and veth name), FRESH_HOSTNAME, FRESH_ADDR, FRESH_PREFIX (24),
#   FRESH_STATE_DIR (instead of $LAB_DIR/fresh), FRESH_LABEL (in messages),
#   FRESH_BRIDGE=HUB_NS/BRIDGE and FRESH_GATEWAY=ADDR: eth0 is a port of that bridge instead
#     of a veth to the root namespace, and 10.204.0.1 (the services) is reached through ADDR,
#     the root namespace's address on that network (a host route; still no default route),
#   FRESH_HOSTS="ADDR NAME,ADDR NAME": the peers its /etc/hosts names,
#   FRESH_NEW_HOST_KEYS=1: SSH host keys of its own (the cache holds the fresh host's).
#   FRESH_KEEP_SERVICES=1: down leaves the services alone (nodes.sh decides once all are down).
# apt-cacher-ng and the mirror are shared: every instance starts them when they are not running;
# down stops them only when no other lab host is up, and an instance only when an instance
# started them ($LAB_DIR/services.owner).
set -euo pipefail
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$SELF")/common.sh"

# The instance: today's fresh host unless FRESH_* say otherwise (see "Instances" above).
DEFAULT_NS=runbook-fresh
NS=${FRESH_NS:-$DEFAULT_NS}
VETH=$NS                    # root end (or hub end); the host end is eth0 inside
ROOT_ADDR=10.204.0.1        # apt-cacher-ng and the image mirror, for every instance
HOST_ADDR=${FRESH_ADDR:-10.204.0.2}
PREFIX=${FRESH_PREFIX:-24}
HOST_NAME=${FRESH_HOSTNAME:-fresh}
LABEL=${FRESH_LABEL:-fresh host}     # in progress lines ("fresh host: up in 2 s")
THE_HOST=${FRESH_LABEL:-the fresh host} # in errors ("the fresh host did not start")
BRIDGE=${FRESH_BRIDGE:-}    # empty: a veth to the root namespace; HUB_NS/BRIDGE: a bridge port
GATEWAY=${FRESH_GATEWAY:-}  # with BRIDGE: the root namespace's address on that network
ACNG_PORT=3142
MIRROR_PORT=5001
SUITE=bookworm
# Packages of the fresh host besides debootstrap's minbase: a small server, no Docker.
HOST_PACKAGES="systemd-sysv openssh-server sudo python3 ca-certificates iproute2 procps kmod netbase less"
# Bump when the way the root is built changes: the cached root is then rebuilt.
ROOT_RECIPE=3

FRESH_DIR=${FRESH_STATE_DIR:-$LAB_DIR/fresh}
ROOT=$FRESH_DIR/root
INIT_PIDFILE=$FRESH_DIR/init.pid
UNSHARE_PIDFILE=$FRESH_DIR/unshare.pid
CGROUPS_FILE=$FRESH_DIR/cgroups
CONSOLE_LOG=$FRESH_DIR/console.log
CACHE_DIR=$LAB_DIR/cache
ACNG_DIR=$LAB_DIR/apt-cacher-ng
ACNG_PIDFILE=$ACNG_DIR/apt-cacher-ng.pid
MIRROR_DIR=$LAB_DIR/mirror
MIRROR_PIDFILE=$MIRROR_DIR/registry.pid
CLIENT_DIR=$LAB_DIR/client
SERVICES_LOCK=$LAB_DIR/services.lock
SERVICES_OWNER=$LAB_DIR/services.owner
DEPLOY_PASSWORD_FILE=$CLIENT_DIR/deploy.password

usage() {
    echo "usage: ${0##*/} up|down|status|reset" >&2
    exit 2
}

# fresh_ssh USER CMD...: run a command on the fresh host with the lab's client files.
fresh_ssh() {
    local user=$1
    shift
    ssh -F none -i "$LAB_SSH_KEY" -o IdentitiesOnly=yes -o IdentityAgent=none \
        -o UserKnownHostsFile="$LAB_SSH_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=3 \
        -l "$user" "$HOST_ADDR" "$@" </dev/null
}

# --- the running host ------------------------------------------------------------------------

# The host PID of the fresh host's PID 1, when it runs; empty otherwise.
init_pid() {
    local pid
    pid=$(cat "$INIT_PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
    # It must still be a process of our namespace, in a PID namespace of its own.
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$NS" ] || return 0
    [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || return 0
    local stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 0
    echo "$pid"
}

is_up() {
    [ -n "$(init_pid)" ]
}

# --- cgroups -----------------------------------------------------------------------------------

# One line per cgroup hierarchy of this machine: MOUNTPOINT OWN_PATH TYPE OPTIONS
# (OPTIONS: the controllers or name= of a v1 hierarchy, "-" for v2).
cgroup_hierarchies() {
    local line fields mp fstype super ctrls path tok ok
    local -a mounts=()
    while IFS= read -r line; do
        # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        read -r -a fields <<<"${line%% - *}"
        mp=${fields[4]}
        read -r fstype _ super <<<"${line#* - }"
        case $fstype in cgroup | cgroup2) mounts+=("$mp $fstype $super") ;; esac
    done </proc/self/mountinfo
    while IFS=: read -r _ ctrls path; do
        for line in "${mounts[@]}"; do
            read -r mp fstype super <<<"$line"
            if [ -z "$ctrls" ]; then
                [ "$fstype" = cgroup2 ] || continue
                echo "$mp $path cgroup2 -"
                break
            fi
            [ "$fstype" = cgroup ] || continue
            ok=1
            for tok in ${ctrls//,/ }; do
                case ",$super," in *",$tok,"*) ;; *) ok=0 ;; esac
            done
            if [ "$ok" = 1 ]; then
                echo "$mp $path cgroup $ctrls"
                break
            fi
        done
    done </proc/self/cgroup
}

make_cgroups() {
    local mp path type opts dir
    : >"$CGROUPS_FILE.new"
    while read -r mp path type opts; do
        dir=$mp${path%/}/$NS
        mkdir -p "$dir"
        if [ -f "$dir/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus")" ]; then
            cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
            cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
        fi
        echo "$mp $dir $type $opts" >>"$CGROUPS_FILE.new"
    done < <(cgroup_hierarchies)
    mv -f "$CGROUPS_FILE.new" "$CGROUPS_FILE"
}

remove_cgroups() {
    [ -f "$CGROUPS_FILE" ] || return 0
    local mp dir _ left=0
    for _ in $(seq 1 25); do
        left=0
        while read -r mp dir _; do
            [ -d "$dir" ] || continue
            # Depth first: the engine inside made cgroups of its own below ours.
            find "$dir" -depth -mindepth 0 -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$dir" ] && left=1
        done <"$CGROUPS_FILE"
        [ "$left" = 0 ] && break
        sleep 0.2
    done
    if [ "$left" = 1 ]; then
        lab_log "$LABEL: some cgroups could not be removed yet:"
        while read -r mp dir _; do [ -d "$dir" ] && lab_log "  $dir"; done <"$CGROUPS_FILE"
        return 0
    fi
    rm -f "$CGROUPS_FILE"
}

# --- network -----------------------------------------------------------------------------------

make_network() {
    if [ ! -e "/run/netns/$NS" ]; then
        ip netns add "$NS"
    fi
    if [ -n "$BRIDGE" ]; then
        make_bridge_port
        return 0
    fi
    if ! ip link show "$VETH" >/dev/null 2>&1; then
        ip link add "$VETH" type veth peer name "$VETH-g"
        ip link set "$VETH-g" netns "$NS"
        ip -n "$NS" link set "$VETH-g" name eth0
    fi
    ip addr replace "$ROOT_ADDR/$PREFIX" dev "$VETH"
    ip link set "$VETH" up
    ip -n "$NS" addr replace "$HOST_ADDR/$PREFIX" dev eth0
    ip -n "$NS" link set lo up
    ip -n "$NS" link set eth0 up
}

# FRESH_BRIDGE=HUB_NS/BRIDGE: the host's eth0 is a port of BRIDGE in namespace HUB_NS (the veth's
# other end is named $VETH there); the lab's services at $ROOT_ADDR are reached through the
# root namespace's address on that network, FRESH_GATEWAY (a host route, no default route).
make_bridge_port() {
    local hub=${BRIDGE%%/*} br=${BRIDGE#*/}
    [ -n "$GATEWAY" ] || lab_die "FRESH_BRIDGE needs FRESH_GATEWAY, the root namespace's address on it"
    ip -n "$hub" link show "$br" >/dev/null 2>&1 ||
        lab_die "$THE_HOST: no bridge $br in namespace $hub"
    if ! ip -n "$NS" link show eth0 >/dev/null 2>&1; then
        ip -n "$hub" link del "$VETH" 2>/dev/null || true
        ip link del "$VETH" 2>/dev/null || true
        ip link add "$VETH" type veth peer name "$VETH-g"
        ip link set "$VETH-g" netns "$NS"
        ip -n "$NS" link set "$VETH-g" name eth0
        ip link set "$VETH" netns "$hub"
    fi
    ip -n "$hub" link set "$VETH" master "$br"
    ip -n "$hub" link set "$VETH" up
    ip -n "$NS" addr replace "$HOST_ADDR/$PREFIX" dev eth0
    ip -n "$NS" link set lo up
    ip -n "$NS" link set eth0 up
    ip -n "$NS" route replace "$ROOT_ADDR/32" via "$GATEWAY" dev eth0
}

remove_network() {
    if [ -n "$BRIDGE" ]; then
        ip -n "${BRIDGE%%/*}" link del "$VETH" 2>/dev/null || true
    else
        ip link del "$VETH" 2>/dev/null || true
    fi
    if [ -e "/run/netns/$NS" ]; then
        ip netns del "$NS" 2>/dev/null || true
    fi
}

# --- apt-cacher-ng -----------------------------------------------------------------------------

# The Debian sources of this machine, one line each: URI SUITE COMPONENTS...
# (deb822 .sources files and one-line .list files; only bookworm suites, only "deb" types).
debian_sources() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled !~ /^[Nn][Oo]/ && uris != "")
                    print uris "\t" suites "\t" comps
                types = uris = suites = comps = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "components") comps = val
                else if (key == "enabled") enabled = val
            }
            END { flush() }
        ' "$f"
    done | while IFS=$'\t' read -r uris suites comps; do
        local u s
        for u in $uris; do
            for s in $suites; do
                echo "$u $s $comps"
            done
        done
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { $1 = ""; print }'
    done
} 

# debian_sources, restricted to the suites of $SUITE (bookworm, -updates, -security), over
# plain http: apt-cacher-ng can only tunnel https, and the fresh host would then have to trust
# whatever certificate authority this machine's own network requires. Debian mirrors serve both.
suite_sources() {
    debian_sources | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security"' |
        sed 's|^https://|http://|' | sort -u
}

main_mirror() {
    local uri
    uri=$(suite_sources | awk -v s="$SUITE" '$2 == s { print $1; exit }')
    [ -n "$uri" ] || lab_die "no Debian $SUITE source in this machine's apt sources"
    echo "$uri"
}

acng_pid() {
    lab_pidfile_pid "$ACNG_PIDFILE" apt-cacher-ng
}

start_acng() {
    if [ -n "$(acng_pid)" ]; then
        return 0
    fi
    mkdir -p "$ACNG_DIR/conf" "$ACNG_DIR/cache" "$ACNG_DIR/log"
    cat >"$ACNG_DIR/conf/acng.conf" <<CONF
# apt-cacher-ng of the runbook lab's fresh host (tests/lab/fresh-host.sh).
CacheDir: $ACNG_DIR/cache
LogDir: $ACNG_DIR/log
SupportDir: /usr/lib/apt-cacher-ng
Port: $ACNG_PORT
BindAddress: $ROOT_ADDR
PidFile: $ACNG_PIDFILE
ForeGround: 0
ExThreshold: 4
ReportPage: acng-report.html
CONF
    rm -f "$ACNG_PIDFILE"
    /usr/sbin/apt-cacher-ng -c "$ACNG_DIR/conf" </dev/null >>"$ACNG_DIR/log/start.log" 2>&1 8>&- 9>&- ||
        lab_die "apt-cacher-ng did not start (see $ACNG_DIR/log)"
    lab_wait -t 15 bash -c "exec 3<>/dev/tcp/$ROOT_ADDR/$ACNG_PORT" ||
        lab_die "apt-cacher-ng does not listen on $ROOT_ADDR:$ACNG_PORT (see $ACNG_DIR/log)"
    lab_wait -t 5 acng_pid_present || true
}

acng_pid_present() {
    [ -n "$(acng_pid)" ]
}

# --- the Docker Hub stand-in --------------------------------------------------------------------

mirror_pid() {
    lab_pidfile_pid "$MIRROR_PIDFILE" docker-registry
}

mirror_has() { # REPO TAG
    curl -fs -o /dev/null --max-time 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$ROOT_ADDR:$MIRROR_PORT/v2/$1/manifests/$2"
}

mirror_answers() {
    curl -fsS -o /dev/null --max-time 2 "http://$ROOT_ADDR:$MIRROR_PORT/v2/"
}

start_mirror() {
    if [ -z "$(mirror_pid)" ]; then
        mkdir -p "$MIRROR_DIR/storage"
        cat >"$MIRROR_DIR/config.yml" <<CONF
# The runbook lab's stand-in for Docker Hub (tests/lab/fresh-host.sh), a pull-through target
# of the fresh host's registry-mirrors.
version: 0.1
log:
  level: warn
  fields:
    service: fresh-hub
storage:
  filesystem:
    rootdirectory: $MIRROR_DIR/storage
  delete:
    enabled: true
http:
  addr: $ROOT_ADDR:$MIRROR_PORT
CONF
        rm -f "$MIRROR_PIDFILE"
        setsid nohup /usr/bin/docker-registry serve "$MIRROR_DIR/config.yml" \
            >>"$MIRROR_DIR/registry.log" 2>&1 </dev/null 8>&- 9>&- &
        echo $! >"$MIRROR_PIDFILE"
        lab_wait -t 15 mirror_answers || {
            tail -n 20 "$MIRROR_DIR/registry.log" >&2 || true
            lab_die "the image mirror does not answer on $ROOT_ADDR:$MIRROR_PORT"
        }
    fi
    # Each image the lab's hosts pull as if from Docker Hub: (archive images.sh saves, name).
    # The Portainer stand-ins are copied again when their server.py changed since.
    local images="hello-world.tar=library/hello-world:latest registry-2.tar=library/registry:2"
    images+=" portainer-ce-lts.tar=portainer/portainer-ce:lts agent-lts.tar=portainer/agent:lts"
    local standin pair missing=""
    standin=$(sha256sum "$LAB_SCRIPTS/portainer-standin/server.py" | cut -d' ' -f1)
    for pair in $images; do
        local name=${pair#*=}
        if ! mirror_has "${name%:*}" "${name##*:}"; then missing+=" $pair"; fi
    done
    if [ "$(cat "$MIRROR_DIR/standin.sha256" 2>/dev/null)" != "$standin" ]; then
        missing+=" portainer-ce-lts.tar=portainer/portainer-ce:lts agent-lts.tar=portainer/agent:lts"
    fi
    if [ -z "$missing" ]; then
        return 0
    fi
    lab_log "$LABEL: filling the image mirror:$(for pair in $missing; do printf ' %s' "${pair#*=}"; done)"
    local tars
    tars=$(mktemp -d)
    # (Without the lock's descriptor: a dockerd started there must not hold the lock.)
    bash "$LAB_SCRIPTS/engine.sh" 8>&- 9>&-
    bash "$LAB_SCRIPTS/images.sh" save "$tars" 8>&- 9>&-
    for pair in $missing; do
        skopeo copy --quiet --dest-tls-verify=false "docker-archive:$tars/${pair%%=*}" \
            "docker://$ROOT_ADDR:$MIRROR_PORT/${pair#*=}"
    done
    rm -rf "$tars"
    for pair in $images; do
        local name=${pair#*=}
        mirror_has "${name%:*}" "${name##*:}" || lab_die "the image mirror still lacks $name"
    done
    echo "$standin" >"$MIRROR_DIR/standin.sha256"
}

# --- the services, shared by every lab host ------------------------------------------------------

# apt-cacher-ng and the mirror serve the fresh host and the instances tests/lab/nodes.sh boots
# (all reach them at $ROOT_ADDR). One command at a time starts or stops them (lock on fd 8,
# which the daemons do not inherit); $SERVICES_OWNER names the instance that started them.
lock_services() {
    exec 8>>"$SERVICES_LOCK"
    flock -w 300 8 || lab_die "another lab command holds $SERVICES_LOCK"
}

start_services() {
    lock_services
    local running=""
    if [ -n "$(acng_pid)" ] && [ -n "$(mirror_pid)" ]; then running=1; fi
    start_acng
    start_mirror
    [ -n "$running" ] || echo "$NS" >"$SERVICES_OWNER"
    exec 8>&-
}

# Another lab host (any instance of this script under LAB_DIR) is running.
other_hosts_up() {
    local f pid
    for f in "$LAB_DIR"/*/init.pid "$LAB_DIR"/*/*/init.pid; do
        if [ ! -f "$f" ] || [ "$f" = "$INIT_PIDFILE" ]; then continue; fi
        pid=$(cat "$f" 2>/dev/null || true)
        [ -n "$pid" ] || continue
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = fresh-init ]; then return 0; fi
    done
    return 1
}

# On down: the services stop with the last lab host, and an instance stops only what an
# instance started (the fresh host's own stay until fresh-host.sh down).
stop_services() {
    lock_services
    local owner
    owner=$(cat "$SERVICES_OWNER" 2>/dev/null || true)
    if other_hosts_up; then
        lab_log "$LABEL: apt-cacher-ng and the image mirror stay up: other lab hosts use them"
    elif [ "$NS" != "$DEFAULT_NS" ] && { [ -z "$owner" ] || [ "$owner" = "$DEFAULT_NS" ]; }; then
        if [ -n "$(acng_pid)$(mirror_pid)" ]; then
            lab_log "$LABEL: apt-cacher-ng and the image mirror stay up: the fresh host started them"
        fi
    else
        lab_stop_pidfile "$MIRROR_PIDFILE" docker-registry 10
        lab_stop_pidfile "$ACNG_PIDFILE" apt-cacher-ng 10
        rm -f "$SERVICES_OWNER"
    fi
    exec 8>&-
}

# --- the root ------------------------------------------------------------------------------------

cache_file() {
    local key
    key=$( { echo "$ROOT_RECIPE $SUITE $HOST_PACKAGES"; suite_sources; } | sha256sum | cut -c1-12)
    echo "$CACHE_DIR/fresh-$SUITE-$key.tar.zst"
}

root_mounted() {
    mountpoint -q "$ROOT"
}

mount_root() {
    mkdir -p "$ROOT"
    root_mounted || mount -t tmpfs -o mode=0755,size=16g fresh-root "$ROOT"
}

# chroot_run CMD...: run CMD in the root with proc and /dev, in private mount and PID namespaces.
chroot_run() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --pid --fork --kill-child -- /bin/sh -c '
        r=$1; shift
        mount -t proc proc "$r/proc" &&
        mount --bind /dev "$r/dev" &&
        mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts" &&
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
            DEBIAN_FRONTEND=noninteractive "$@"
    ' sh "$ROOT" "$@"
}

write_sources() { # the guest's /etc/apt/sources.list.d/debian.sources
    local uri suite comps
    {
        echo "# The Debian mirror of the machine that runs the lab, reached through the proxy in"
        echo "# /etc/apt/apt.conf.d/01proxy."
        suite_sources | while read -r uri suite comps; do
            printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' \
                "$uri" "$suite" "$comps"
        done
    } >"$ROOT/etc/apt/sources.list.d/debian.sources"
    rm -f "$ROOT/etc/apt/sources.list"
}

build_root() {
    local cache=$1 mirror log
    mirror=$(main_mirror)
    log=$FRESH_DIR/build.log
    : >"$log"
    lab_log "$LABEL: building its root (debootstrap $SUITE, minbase; log: $log)"
    mount_root
    find "$ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 
    if ! http_proxy=http://$ROOT_ADDR:$ACNG_PORT debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        lab_die "debootstrap failed (see $log)"
    fi

    printf 'Acquire::http::Proxy "http://%s:%s";\n' "$ROOT_ADDR" "$ACNG_PORT" >"$ROOT/etc/apt/apt.conf.d/01proxy"
    write_sources
    write_identity
    echo "# This host has no name server: names resolve through /etc/hosts only." >"$ROOT/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOT/usr/sbin/policy-rc.d"

    # shellcheck disable=SC2086
    if ! chroot_run sh -c "apt-get update && apt-get install -y --no-install-recommends $HOST_PACKAGES" >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        lab_die "installing the host's packages failed (see $log)"
    fi

    chroot_run sh -e -c '
        useradd --create-home --shell /bin/bash --groups sudo deploy
        useradd --create-home --shell /bin/bash nopass
        usermod -p "*" nopass
        printf "nopass ALL=(ALL:ALL) NOPASSWD: ALL\n" >/etc/sudoers.d/nopass
        chmod 0440 /etc/sudoers.d/nopass
        visudo -c -q
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
    ' >>"$log" 2>&1 || lab_die "configuring the host's users failed (see $log)"

    cat >"$ROOT/etc/ssh/sshd_config.d/runbook-lab.conf" <<'CONF'
# The runbook lab's fresh host: keys for everyone, a password too for deploy.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no

Match User deploy
    PasswordAuthentication yes
CONF
    # The lab's Docker Hub stand-in, set before Docker is installed.
    mkdir -p "$ROOT/etc/docker"
    printf '{\n  "registry-mirrors": ["http://%s:%s"]\n}\n' "$ROOT_ADDR" "$MIRROR_PORT" >"$ROOT/etc/docker/daemon.json"
    rm -f "$ROOT/usr/sbin/policy-rc.d"

    # The cache holds the host's private SSH host keys.
    install -d -m 0700 "$CACHE_DIR"
    (umask 077 && tar --zstd --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -cpf "$cache.partial" .)
    mv -f "$cache.partial" "$cache"
    find "$CACHE_DIR" -maxdepth 1 -name "fresh-$SUITE-*.tar.zst" ! -path "$cache" -delete
    lab_log "$LABEL: root cached in $cache ($(du -h "$cache" | cut -f1))"
}

# /etc/hostname and /etc/hosts: this host, then the FRESH_HOSTS peers ("ADDR NAME,ADDR NAME").
write_identity() {
    local peer addr name
    echo "$HOST_NAME" >"$ROOT/etc/hostname"
    {
        printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n%s\t%s\n' "$HOST_NAME" "$HOST_ADDR" "$HOST_NAME"
        local IFS=,
        for peer in ${FRESH_HOSTS:-}; do
            IFS=" " read -r addr name <<<"$peer"
            [ "$addr" = "$HOST_ADDR" ] || printf '%s\t%s\n' "$addr" "$name"
        done
        printf '::1\t\tlocalhost ip6-localhost ip6-loopback\n'
    } >"$ROOT/etc/hosts"
}

restore_root() {
    local cache=$1
    mount_root
    find "$ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    tar --zstd --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -xpf "$cache"
    # Every fresh host its own machine id, as on a newly installed one.
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ROOT/etc/machine-id"
    echo >>"$ROOT/etc/machine-id"
    write_identity
    if [ "${FRESH_NEW_HOST_KEYS:-0}" = 1 ]; then
        # SSH host keys of its own too (the cached root's are the fresh host's).
        rm -f "$ROOT"/etc/ssh/ssh_host_*
        chroot "$ROOT" /usr/bin/ssh-keygen -A >/dev/null
    fi
}

# The lab's per-boot files: init, keys, password, quirk fixes.
prepare_root() {
    install -m 0755 "$(dirname "$SELF")/fresh-init.py" "$ROOT/usr/local/sbin/fresh-init"
    if [ "${FRESH_ULIMIT_FIX:-1}" = 1 ]; then
        mkdir -p "$ROOT/lib/lsb/init-functions.d"
        cat >"$ROOT/lib/lsb/init-functions.d/99-runbook-lab-ulimit" <<'SH'
# The runbook lab's fresh host may not raise the hard nofile limit (the capability is withheld
# from it): let init scripts go on when ulimit fails, as they do on a real host.
ulimit() {
    command ulimit "$@" 2>/dev/null || true
}
SH
    else
        rm -f "$ROOT/lib/lsb/init-functions.d/99-runbook-lab-ulimit"
    fi
    local user home
    for user in root deploy nopass; do
        home=$(awk -F: -v u="$user" '$1 == u { print $6 }' "$ROOT/etc/passwd")
        [ -n "$home" ] || lab_die "$THE_HOST has no user $user"
        install -d -m 0700 "$ROOT$home/.ssh"
        install -m 0600 "$LAB_SSH_KEY.pub" "$ROOT$home/.ssh/authorized_keys"
        chroot "$ROOT" chown -R "$user:" "$home/.ssh"
    done
    printf 'deploy:%s\n' "$(cat "$DEPLOY_PASSWORD_FILE")" | chroot "$ROOT" /usr/sbin/chpasswd
}

# --- client files -------------------------------------------------------------------------------

client_files() {
    install -d -m 0700 "$CLIENT_DIR"
    if [ ! -f "$LAB_SSH_KEY" ]; then
        ssh-keygen -q -t ed25519 -N '' -C runbook-lab-client -f "$LAB_SSH_KEY"
    fi
    if [ ! -s "$DEPLOY_PASSWORD_FILE" ]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' | tr -d '\n' >"$DEPLOY_PASSWORD_FILE")
    fi
    chmod 0600 "$DEPLOY_PASSWORD_FILE"
}

# Put the host's key in known_hosts, replacing a stale line for its address (under a lock:
# the lab's hosts may boot side by side).
known_host() {
    (
        flock -w 30 7 || lab_die "another lab command holds $LAB_SSH_KNOWN_HOSTS.lock"
        local type key _ tmp
        read -r type key _ <"$ROOT/etc/ssh/ssh_host_ed25519_key.pub"
        tmp=$(mktemp "$LAB_SSH_KNOWN_HOSTS.XXXXXX")
        if [ -f "$LAB_SSH_KNOWN_HOSTS" ]; then
            awk -v a="$HOST_ADDR" '$1 != a' "$LAB_SSH_KNOWN_HOSTS" >"$tmp"
        fi
        echo "$HOST_ADDR $type $key" >>"$tmp"
        chmod 0644 "$tmp"
        mv -f "$tmp" "$LAB_SSH_KNOWN_HOSTS"
    ) 7>>"$LAB_SSH_KNOWN_HOSTS.lock"
}

# --- boot and stop -------------------------------------------------------------------------------

# Runs as PID 1 of the new PID namespace (see boot_host): mounts, then becomes fresh-init.
inner_boot() {
    local r=$ROOT mp dir type opts rel
    mount --make-rprivate /
    mount --bind "$r" "$r"
    mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
    mount -t sysfs -o nosuid,nodev,noexec sysfs "$r/sys"
    if [ "$(awk '$2 == "/sys/fs/cgroup" { t = $3 } END { print t }' /proc/self/mounts)" = cgroup2 ]; then
        mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
    else
        mount -t tmpfs -o mode=0755,nosuid,nodev,noexec,size=64k cgroup "$r/sys/fs/cgroup"
        while read -r mp dir type opts; do
            rel=${mp#/sys/fs/cgroup/}
            mkdir -p "$r/sys/fs/cgroup/$rel"
            if [ "$type" = cgroup2 ]; then
                mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup/$rel"
            else
                mount -t cgroup -o "nosuid,nodev,noexec,$opts" cgroup "$r/sys/fs/cgroup/$rel"
            fi
        done <"$CGROUPS_FILE"
    fi
    mount -t tmpfs -o mode=0755,nosuid,size=8m dev "$r/dev"
    mknod -m 0666 "$r/dev/null" c 1 3
    mknod -m 0666 "$r/dev/zero" c 1 5
    mknod -m 0666 "$r/dev/full" c 1 7
    mknod -m 0666 "$r/dev/random" c 1 8
    mknod -m 0666 "$r/dev/urandom" c 1 9
    mknod -m 0666 "$r/dev/tty" c 5 0
    mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/dev/mqueue"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$r/dev/pts"
    ln -s pts/ptmx "$r/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
    mount -t mqueue -o nosuid,nodev,noexec mqueue "$r/dev/mqueue"
    ln -s /proc/self/fd "$r/dev/fd"
    ln -s /proc/self/fd/0 "$r/dev/stdin"
    ln -s /proc/self/fd/1 "$r/dev/stdout"
    ln -s /proc/self/fd/2 "$r/dev/stderr"
    ln -s /proc/kcore "$r/dev/core"
    mount -t tmpfs -o mode=0755,nosuid,nodev,size=1g run "$r/run"
    hostname "$HOST_NAME"
    cd "$r"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /usr/local/sbin/fresh-init
}

# Join the child cgroups, then enter the namespaces (runs as the background launcher).
launch() {
    local mp dir _
    while read -r mp dir _; do
        echo $$ >"$dir/cgroup.procs"
    done <"$CGROUPS_FILE"
    exec nsenter --net="/run/netns/$NS" -- \
        unshare --mount --uts --ipc --pid --cgroup --fork --kill-child=SIGTERM -- \
        bash "$SELF" __boot
}

boot_host() {
    make_cgroups
    rm -f "$INIT_PIDFILE" "$UNSHARE_PIDFILE"
    echo "--- boot $(date '+%F %T')" >>"$CONSOLE_LOG"
    setsid nohup bash "$SELF" __launch >>"$CONSOLE_LOG" 2>&1 </dev/null 9>&- &
    local launcher=$! child=""
    echo "$launcher" >"$UNSHARE_PIDFILE"
    for _ in $(seq 1 100); do
        child=$(awk '{ print $1 }' "/proc/$launcher/task/$launcher/children" 2>/dev/null || true)
        if [ -n "$child" ] && [ "$(ip netns identify "$child" 2>/dev/null)" = "$NS" ]; then
            break
        fi
        child=""
        [ -d "/proc/$launcher" ] || break
        sleep 0.05
    done
    if [ -z "$child" ]; then
        tail -n 20 "$CONSOLE_LOG" >&2 || true
        lab_die "$THE_HOST did not start (see $CONSOLE_LOG)"
    fi
    echo "$child" >"$INIT_PIDFILE"
    if ! lab_wait -t 60 -i 0.1 fresh_ssh root true; then
        tail -n 20 "$CONSOLE_LOG" >&2 || true
        lab_die "$THE_HOST does not answer ssh on $HOST_ADDR:22 (see $CONSOLE_LOG)"
    fi
}

stop_host() {
    local pid
    pid=$(init_pid)
    if [ -n "$pid" ]; then
        lab_log "$LABEL: shutting down"
        kill -TERM "$pid" 2>/dev/null || true
        if ! lab_wait -t 45 -i 0.2 init_gone "$pid"; then
            lab_log "$LABEL: PID 1 did not stop in 45 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            lab_wait -t 10 init_gone "$pid" || lab_die "$THE_HOST's PID 1 ($pid) does not exit"
        fi
    fi
    local launcher
    launcher=$(cat "$UNSHARE_PIDFILE" 2>/dev/null || true)
    if [ -n "$launcher" ] && [ "$(cat "/proc/$launcher/comm" 2>/dev/null)" = unshare ]; then
        kill -TERM "$launcher" 2>/dev/null || true
    fi
    rm -f "$INIT_PIDFILE" "$UNSHARE_PIDFILE"
    remove_cgroups
}

init_gone() {
    [ ! -d "/proc/$1" ] && return 0
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat%% *}" = Z ]
}

# Mounts left in the root namespace below the root (none in normal operation).
unmount_below_root() {
    local mp
    awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r mp; do
        umount -l "$mp" 2>/dev/null || true
    done
}

# --- commands ------------------------------------------------------------------------------------

up() {
    lab_need_root
    local t0=$SECONDS
    if is_up; then
        # Another lab script may have rewritten known_hosts meanwhile.
        known_host
        # The mirror may lack an image added (or a stand-in changed) since it was filled.
        start_services
        lab_log "$LABEL: already up (ssh root@$HOST_ADDR)"
        return 0
    fi
    lab_apt_install debootstrap debian-archive-keyring apt-cacher-ng skopeo zstd docker-registry \
        openssh-client iproute2 curl tar
    mkdir -p "$FRESH_DIR"
    # Leftovers of a host that ended without down (its disk stays).
    stop_host
    unmount_below_root
    client_files
    make_network
    start_services

    local cache
    cache=$(cache_file)
    if root_mounted && [ -x "$ROOT/usr/sbin/sshd" ]; then
        lab_log "$LABEL: resuming its disk in $ROOT"
    else
        if [ ! -f "$cache" ] || [ "${FRESH_REBUILD:-0}" = 1 ]; then
            build_root "$cache"
        fi
        lab_log "$LABEL: restoring a fresh root from $cache"
        restore_root "$cache"
    fi
    prepare_root
    known_host
    boot_host
    lab_log "$LABEL: up in $((SECONDS - t0)) s: ssh root@$HOST_ADDR (key $LAB_SSH_KEY, known_hosts $LAB_SSH_KNOWN_HOSTS)"
}

down() {
    lab_need_root
    stop_host
    if [ "${FRESH_KEEP_SERVICES:-0}" != 1 ]; then stop_services; fi
    remove_network
    unmount_below_root
    lab_log "$LABEL: down (its disk stays in $ROOT until reset)"
}

reset() {
    down
    if root_mounted; then
        umount "$ROOT" || umount -l "$ROOT"
    fi
    rm -rf "$ROOT"
    lab_log "$LABEL: disk discarded; the next up boots a fresh host"
}

status() {
    local pid
    pid=$(init_pid)
    if [ -n "$pid" ]; then
        echo "$LABEL: up (PID 1 is $pid here), ssh root@$HOST_ADDR port 22"
        echo "users:       root, deploy (password in $DEPLOY_PASSWORD_FILE, sudo asks for it), nopass (sudo without password)"
        echo "key:         $LAB_SSH_KEY"
        echo "known_hosts: $LAB_SSH_KNOWN_HOSTS"
        return 0
    fi
    if root_mounted; then
        echo "$LABEL: down (its used disk is kept in $ROOT; reset discards it)"
    else
        echo "$LABEL: down (the next up boots a fresh host)"
    fi
    return 1
}

# One command at a time (the daemons started get no copy of the lock's descriptor).
lock() { lab_lock "$FRESH_DIR" fresh-host.sh; }

[ $# -eq 1 ] || usage
case $1 in
    up) lock; up ;;
    down) lock; down ;;
    status) status ;;
    reset) lock; reset ;;
    __stop-services) lock; stop_services ;; # tests/lab/nodes.sh, after its nodes went down
    __launch) launch ;;
    __boot) inner_boot ;;
    *) usage ;;
esac
