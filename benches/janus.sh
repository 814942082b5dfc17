#!/usr/bin/env bash
# Janus 1.1.2 (videoroom plugin, HTTP API) as a peer for the capacity benchmark, run in
# its own network namespace so that it can gather a 127.0.0.1 candidate (Janus skips
# loopback interfaces, so 127.0.0.1/32 goes on a veth inside the namespace).
#
#   benches/janus.sh start     install Janus if missing, write a private config, start it
#   benches/janus.sh stop      stop Janus and delete the namespace
#   benches/janus.sh status    say whether it runs (and its pid)
#
# The load generator must run in the same namespace:
#   ip netns exec knudepunkt-janus target/release/loadtest steady \
#       --target janus://127.0.0.1:8088 --meetings 5
# Environment: JANUS_NS (namespace, default knudepunkt-janus), JANUS_DIR (config, log
# and pid folder, default /tmp/knudepunkt-janus), JANUS_PORT (HTTP API, default 8088),
# JANUS_DEBUG (Janus log level 0-7, default 3), JANUS_EVENT_LOOPS (Janus's static media
# threads; default one per core, as knudepunkt runs a shard per core; 0 for Janus's own
# default, a thread per handle: same capacity here, ~25% more CPU).
set -euo pipefail

ns=${JANUS_NS:-knudepunkt-janus}
dir=${JANUS_DIR:-/tmp/knudepunkt-janus}
port=${JANUS_PORT:-8088}
debug=${JANUS_DEBUG:-3}
event_loops=${JANUS_EVENT_LOOPS:-$(nproc)}
pidfile=$dir/janus.pid
log=$dir/janus.log

die() {
    echo "janus.sh: error: $*" >&2
    exit 1
}

running_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q janus "/proc/$pid/comm" 2>/dev/null || return 1
    echo "$pid"
}

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, apt-get); run it with sudo"
}

install_janus() {
    command -v janus >/dev/null && command -v curl >/dev/null && command -v ip >/dev/null && return 0
    command -v apt-get >/dev/null || die "janus, curl or ip (iproute2) missing and no apt-get to install them"
    echo "janus.sh: installing janus (and curl, iproute2)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y janus curl iproute2; } \
        >"$dir/apt.log" 2>&1 || {
        tail -5 "$dir/apt.log" >&2
        die "apt-get install janus failed (log: $dir/apt.log)"
    }
    command -v janus >/dev/null || die "janus is still not on PATH after installing it"
}

# The Janus modules in folder $1 but $2, comma-separated.
modules_but() {
    local f out=""
    for f in "$1"/libjanus_*.so; do
        [ -e "$f" ] || continue
        f=${f##*/}
        [ "$f" = "${2:-}" ] && continue
        out=${out:+$out,}$f
    done
    echo "$out"
}

write_config() {
    local conf=$dir/conf lib
    lib=$(dirname "$(dpkg -L janus 2>/dev/null | grep -m1 '/janus/plugins/libjanus_videoroom.so$' || true)")
    [ -n "$lib" ] && [ "$lib" != . ] || lib=/usr/lib/x86_64-linux-gnu/janus/plugins
    lib=${lib%/plugins}
    [ -f "$lib/plugins/libjanus_videoroom.so" ] || die "videoroom plugin not found under $lib/plugins"
    mkdir -p "$conf"
    # Everything but what we use is disabled, by file name.
    local plugins transports loggers events
    plugins=$(modules_but "$lib/plugins" libjanus_videoroom.so)
    transports=$(modules_but "$lib/transports" libjanus_http.so)
    loggers=$(modules_but "$lib/loggers")
    events=$(modules_but "$lib/events")
    cat >"$conf/janus.jcfg" <<EOF
# Written by benches/janus.sh: do not edit (it is rewritten on every start).
general: {
	configs_folder = "$conf"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = $debug
	session_timeout = 60
$([ "$event_loops" -gt 0 ] && printf '\tevent_loops = %s\n' "$event_loops")
	admin_secret = "knudepunkt-bench"
}
# Below the kernel's ephemeral ports (32768-60999), where the load generator's sockets are.
media: {
	rtp_port_range = "10000-30000"
}
nat: {
	ice_enforce_list = "127.0.0.1"
	ignore_mdns = true
}
plugins: {
	disable = "$plugins"
}
transports: {
	disable = "$transports"
}
loggers: {
	disable = "$loggers"
}
events: {
	broadcast = false
	disable = "$events"
}
EOF
    cat >"$conf/janus.transport.http.jcfg" <<EOF
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = $port
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
    # No preconfigured rooms: the load generator creates its own.
    cat >"$conf/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF
}

setup_ns() {
    if ! ip netns list | grep -qw "^$ns"; then
        ip netns add "$ns" || die "cannot create network namespace $ns"
    fi
    ip netns exec "$ns" ip link set lo up
    if ! ip netns exec "$ns" ip link show jv0 >/dev/null 2>&1; then
        ip netns exec "$ns" ip link add jv0 type veth peer name jv1 ||
            die "cannot create the veth pair in $ns"
    fi
    ip netns exec "$ns" ip addr replace 127.0.0.1/32 dev jv0
    ip netns exec "$ns" ip link set jv0 up
    ip netns exec "$ns" ip link set jv1 up
}

start() {
    need_root
    mkdir -p "$dir"
    if pid=$(running_pid); then
        echo "janus.sh: Janus already runs (pid $pid) in namespace $ns"
        return 0
    fi
    install_janus
    write_config
    setup_ns
    local url=http://127.0.0.1:$port/janus/info
    if ip netns exec "$ns" curl -s -o /dev/null --max-time 2 "$url"; then
        die "something not started by this script already answers on $url in namespace $ns"
    fi
    : >"$log"
    # setsid: its own session, so that it outlives this shell.
    ip netns exec "$ns" setsid janus -C "$dir/conf/janus.jcfg" -F "$dir/conf" -L "$log" -o \
        </dev/null >"$dir/janus.out" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 50); do
        if ip netns exec "$ns" curl -sf -o /dev/null "$url"; then
            pid=$(running_pid) || die "Janus exited; see $log"
            echo "janus.sh: Janus $(janus --version 2>/dev/null | sed -n 's/Janus version: [0-9]* (\(.*\))/\1/p') runs (pid $pid) in namespace $ns, API $url"
            echo "janus.sh: load it with: ip netns exec $ns target/release/loadtest steady --target janus://127.0.0.1:$port ..."
            return 0
        fi
        running_pid >/dev/null || {
            tail -20 "$dir/janus.out" >&2
            die "Janus exited during start-up (log: $log)"
        }
        sleep 0.2
    done
    tail -20 "$log" >&2
    die "Janus did not answer $url within 10 s (log: $log)"
}

stop() {
    need_root
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "janus.sh: stopped Janus (pid $pid)"
    else
        echo "janus.sh: Janus was not running"
    fi
    rm -f "$pidfile"
    if ip netns list | grep -qw "^$ns"; then
        ip netns delete "$ns" && echo "janus.sh: deleted namespace $ns"
    fi
}

status() {
    if pid=$(running_pid); then
        echo "janus.sh: Janus runs (pid $pid) in namespace $ns"
    else
        echo "janus.sh: Janus is not running"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
