#!/usr/bin/env bash
# The lab's nodes: three fresh Debian hosts WITHOUT Docker on one private network, so that the
# runbook can install Docker on all of them side by side and build a 3-node swarm from them.
# Each is an instance of the fresh host (tests/lab/fresh-host.sh: same cached root, init, users,
# apt proxy and image mirror), with its own network namespace, sshd, disk and host keys.
#
#   nodes.sh up      boot the hub and the three nodes: 6 to 10 s from the cached root on a busy
#                    2-core machine (node1 first, then the other two side by side); the first
#                    time fresh-host.sh builds the root. Already up: says so, refreshes
#                    known_hosts, nothing else.
#   nodes.sh down    stop the nodes and remove the hub; their disks stay, so the next up
#                    resumes the same hosts (Docker, swarm, files), as after a reboot.
#   nodes.sh status  say whether each is up and how to reach it (exit 0 only when all are up)
#   nodes.sh reset   down, then discard their disks: the next up boots fresh hosts again
#
# Nodes:    node1 10.203.0.11, node2 10.203.0.12, node3 10.203.0.13 (hostnames node1..3), in
#           namespaces runbook-node1..3; each /etc/hosts names all three; no DNS server.
# Network:  10.203.0.0/24 on a bridge br0 in a namespace of its own, runbook-hub: the root
#           namespace's FORWARD policy (DROP, set by this machine's dockerd) would drop frames
#           between the nodes on a bridge there. Each node's eth0 is a veth into br0; one more
#           veth joins br0 to the root namespace (runbook-hub, 10.203.0.1/24). The nodes reach
#           each other on every port (the swarm's 2377/tcp, 7946/tcp+udp, 4789/udp, VXLAN)
#           and nothing else but the lab's services: no default route, one host route to
#           10.204.0.1 via 10.203.0.1.
# Services: apt-cacher-ng (10.204.0.1:3142) and the image mirror (10.204.0.1:5001), shared with
#           the fresh host; each node's /etc/apt/apt.conf.d/01proxy and /etc/docker/daemon.json
#           name them as on the fresh host. 10.204.0.1 is also put on the root end of the hub's
#           link, so the nodes keep them while the fresh host's network is down. up starts them
#           when they are not running; down stops them only if the nodes started them and no
#           other lab host is up (see fresh-host.sh, "Instances").
# SSH:      root, deploy, nopass on NODE:22, with the fresh host's client key and deploy password;
#           every node's own host key is put in $LAB_DIR/client/known_hosts.
# Memory:   per node, about 6 MiB of processes and 216 MiB of disk (a tmpfs) as booted; about
#           55 MiB and 0.9 to 1 GB once docker.io is installed and it runs a swarm task
#           (nodes.sh status shows both).
#
# State (under LAB_DIR, default /var/lib/runbook-lab):
#   nodes/nodeN/   as fresh/ for the fresh host: root (a tmpfs), init.pid, cgroups (named
#                  runbook-nodeN), console.log
#   nodes/lock     one nodes.sh command at a time
set -euo pipefail
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$SELF")/common.sh"

HUB_NS=runbook-hub
HUB_BRIDGE=br0
HUB_LINK=runbook-hub     # root end; the hub end is attached to the bridge
GATEWAY=10.203.0.1
PREFIX=24
SERVICES_ADDR=10.204.0.1 # apt-cacher-ng and the image mirror (fresh-host.sh)
NODES="10.203.0.11 node1,10.203.0.12 node2,10.203.0.13 node3" # ADDR NAME, as FRESH_HOSTS
NODES_DIR=$LAB_DIR/nodes

usage() {
    echo "usage: ${0##*/} up|down|status|reset" >&2
    exit 2
}

# node_names: node1 node2 node3
node_names() {
    local IFS=,
    local node
    for node in $NODES; do echo "${node#* }"; done
}

node_addr() {
    local IFS=,
    local node
    for node in $NODES; do
        if [ "${node#* }" = "$1" ]; then echo "${node%% *}"; fi
    done
}

# fresh NODE COMMAND: fresh-host.sh's COMMAND for one node (its down leaves the services
# alone: stop_services below decides once all nodes are down).
fresh() {
    local name=$1
    FRESH_KEEP_SERVICES=1 FRESH_NS=runbook-$name FRESH_HOSTNAME=$name FRESH_ADDR=$(node_addr "$name") \
        FRESH_PREFIX=$PREFIX FRESH_STATE_DIR=$NODES_DIR/$name FRESH_LABEL=$name \
        FRESH_BRIDGE=$HUB_NS/$HUB_BRIDGE FRESH_GATEWAY=$GATEWAY FRESH_HOSTS=$NODES \
        FRESH_NEW_HOST_KEYS=1 \
        bash "$LAB_SCRIPTS/fresh-host.sh" "$2" 9>&-
}

# on_nodes COMMAND NODE...: fresh-host.sh COMMAND on the nodes side by side; 1 if any failed.
on_nodes() {
    local cmd=$1 name failed=0
    shift
    local -a pids=()
    for name in "$@"; do
        fresh "$name" "$cmd" &
        pids+=($!)
    done
    for name in "${pids[@]}"; do
        wait "$name" || failed=1
    done
    return "$failed"
}

# --- the hub -------------------------------------------------------------------------------------

make_hub() {
    if [ ! -e "/run/netns/$HUB_NS" ]; then
        ip netns add "$HUB_NS"
    fi
    if ! ip -n "$HUB_NS" link show "$HUB_BRIDGE" >/dev/null 2>&1; then
        ip -n "$HUB_NS" link add "$HUB_BRIDGE" type bridge
    fi
    ip -n "$HUB_NS" link set lo up
    ip -n "$HUB_NS" link set "$HUB_BRIDGE" up
    if ! ip link show "$HUB_LINK" >/dev/null 2>&1; then
        ip -n "$HUB_NS" link del "$HUB_LINK-g" 2>/dev/null || true
        ip link add "$HUB_LINK" type veth peer name "$HUB_LINK-g"
        ip link set "$HUB_LINK-g" netns "$HUB_NS"
    fi
    ip -n "$HUB_NS" link set "$HUB_LINK-g" master "$HUB_BRIDGE"
    ip -n "$HUB_NS" link set "$HUB_LINK-g" up
    ip addr replace "$GATEWAY/$PREFIX" dev "$HUB_LINK"
    # The services' address, here too: they listen on it, and the fresh host's veth (which
    # carries it too) comes and goes with the fresh host.
    ip addr replace "$SERVICES_ADDR/32" dev "$HUB_LINK"
    ip link set "$HUB_LINK" up
}

remove_hub() {
    ip link del "$HUB_LINK" 2>/dev/null || true
    if [ -e "/run/netns/$HUB_NS" ]; then
        ip netns del "$HUB_NS" 2>/dev/null || true
    fi
}

hub_up() {
    ip -n "$HUB_NS" link show "$HUB_BRIDGE" >/dev/null 2>&1 && ip link show "$HUB_LINK" >/dev/null 2>&1
}

# --- commands ------------------------------------------------------------------------------------

all_up() {
    local name
    hub_up || return 1
    for name in $(node_names); do
        fresh "$name" status >/dev/null || return 1
    done
}

up() {
    local t0=$SECONDS first rest
    if all_up; then
        # Refreshes known_hosts, as fresh-host.sh up does when the host is up.
        # shellcheck disable=SC2046 # one word per node
        on_nodes up $(node_names) || true
        lab_log "nodes: already up: $(node_list)"
        return 0
    fi
    make_hub
    # The first one alone: it builds the cached root and starts the services if need be.
    first=$(node_names | head -n 1)
    rest=$(node_names | tail -n +2)
    fresh "$first" up
    # shellcheck disable=SC2086 # one word per node
    on_nodes up $rest || lab_die "some nodes did not come up (see $NODES_DIR/*/console.log)"
    lab_log "nodes: up in $((SECONDS - t0)) s: $(node_list) (ssh root@ADDR, key $LAB_SSH_KEY, known_hosts $LAB_SSH_KNOWN_HOSTS)"
}

node_list() {
    local name out=""
    for name in $(node_names); do out+="${out:+, }$name $(node_addr "$name")"; done
    echo "$out"
}

down() {
    # shellcheck disable=SC2046 # one word per node
    on_nodes down $(node_names) || lab_die "some nodes did not stop"
    stop_services
    remove_hub
    lab_log "nodes: down (their disks stay in $NODES_DIR/*/root until reset)"
}

reset() {
    # shellcheck disable=SC2046 # one word per node
    on_nodes reset $(node_names) || lab_die "some nodes did not stop"
    stop_services
    remove_hub
    lab_log "nodes: disks discarded; the next up boots fresh hosts"
}

# Now that no node is up: the services stop if the nodes started them and the fresh host is
# not up either (fresh-host.sh, "Instances").
stop_services() {
    fresh "$(node_names | head -n 1)" __stop-services
}

status() {
    local name out rc=0
    if hub_up; then
        echo "hub: up, 10.203.0.0/$PREFIX on $HUB_BRIDGE in namespace $HUB_NS, root end $GATEWAY ($HUB_LINK)"
    else
        echo "hub: down"
        rc=1
    fi
    for name in $(node_names); do
        out=$(fresh "$name" status) || rc=1
        echo "${out%%$'\n'*}"
        memory "$name"
    done
    echo "users:       root, deploy (password in $LAB_DIR/client/deploy.password, sudo asks for it), nopass (sudo without password)"
    echo "key:         $LAB_SSH_KEY"
    echo "known_hosts: $LAB_SSH_KNOWN_HOSTS"
    return "$rc"
}

# The memory a node uses: its processes' (anonymous memory of its memory cgroup) and its
# disk's (a tmpfs: in memory too; the cgroup's page cache is mostly that).
memory() {
    local cgroups=$NODES_DIR/$1/cgroups dir type bytes="" disk=""
    [ -f "$cgroups" ] || return 0
    while read -r _ dir type _; do
        if [ "$type" = cgroup2 ] && [ -f "$dir/memory.stat" ]; then
            bytes=$(awk '$1 == "anon" { print $2 }' "$dir/memory.stat")
        elif [ -f "$dir/memory.stat" ]; then
            bytes=$(awk '$1 == "total_rss" { print $2 }' "$dir/memory.stat")
        fi
        [ -n "$bytes" ] && break
    done <"$cgroups"
    if mountpoint -q "$NODES_DIR/$1/root"; then
        disk=$(df -m --output=used "$NODES_DIR/$1/root" | tail -n 1 | tr -d ' ')
    fi
    echo "  memory: ${bytes:+$((bytes / 1048576)) MiB in its processes, }${disk:+$disk MiB of disk (tmpfs)}"
}

# One command at a time.
lock() { lab_lock "$NODES_DIR" nodes.sh; }

[ $# -eq 1 ] || usage
case $1 in
    up) lock; up ;;
    down) lock; down ;;
    status) status ;;
    reset) lock; reset ;;
    *) usage ;;
esac
