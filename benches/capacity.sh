#!/usr/bin/env bash
# The capacity benchmark: the same load-generator scenario and thresholds against each
# system in one run, on this machine, load generator beside the server:
#
#   - relay:      the bare UDP relay (benches/src/bin/relay.rs): same fan-out and
#                 batching, no crypto: what the machine can move;
#   - knudepunkt: signalling with its embedded media node (one shard per core);
#   - janus:      Janus 1.1.2 (Debian package; videoroom plugin, simulcast), in its own
#                 network namespace (benches/janus.sh; the load generator runs there too).
#
# For each: `loadtest capacity` raises concurrent VDX-sized meetings by --factor until
# a step fails the thresholds; the highest passing level is the capacity. A `steady`
# run at that level then measures the delivered packets/s (datagrams the clients
# received, i.e. forwarded) and the server's CPU time per forwarded packet.
#
#   benches/capacity.sh            full run; appends the figures to benches/RESULTS.md
#   benches/capacity.sh --per-core the standard figure (ARCHITECTURE.md): each server pinned to
#                                  core 0 with one shard / one thread / one event loop,
#                                  the load generator pinned to core 1
#   benches/capacity.sh --quick    one tiny step per system with debug binaries (CI:
#                                  proves the command works; records nothing); combines
#                                  with --per-core
#
# Figures: the highest passing concurrency; RTP media packets per second the clients
# received at that level (not RTCP, not padding: systems that probe are not
# flattered); the server's CPU per such packet; and the layers its subscribers got.
# Janus needs root (network namespaces) and apt-get (to install it); SYSTEMS="relay
# knudepunkt" leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 percore=0
start=10 factor=1.3 max=400 step=15 confirm=20
for arg in "$@"; do
    case $arg in
        --quick) quick=1 start=2 factor=2 max=2 step=3 confirm=3 ;;
        --per-core) percore=1 ;;
        *) echo "usage: benches/capacity.sh [--quick] [--per-core]" >&2; exit 2 ;;
    esac
done
# Beside each other (default) both use both cores, the load generator at idle priority;
# per core, each has its own.
if [ $percore = 1 ]; then
    command -v taskset >/dev/null || { echo "error: --per-core needs taskset (util-linux)" >&2; exit 2; }
    [ "$(nproc)" -ge 2 ] || { echo "error: --per-core needs two cores" >&2; exit 2; }
    pin_server=(taskset -c 0) pin_lt=(taskset -c 1) lt_cpu=() shards=1
else
    pin_server=() pin_lt=() lt_cpu=(--yield-cpu) shards=2
fi

if [ $quick = 1 ]; then
    cargo build -q --bin signalling --bin loadtest --bin relay
    bin=target/debug
else
    cargo build -q --release --bin signalling --bin loadtest --bin relay
    bin=target/release
fi
out=$(mktemp -d /tmp/knudepunkt-capacity.XXXXXX)
hz=$(getconf CLK_TCK)
# Kernel work that preempts a benchmark for milliseconds makes the load generator late
# and steps inconclusive. Seen here: DAMON's proactive reclaim (kdamond, a pageout scheme
# applied every 5 s aggregation interval) took 8-14 ms of a core each time, and every
# run with it on was inconclusive from 51 meetings up (RESULTS.md, 2026-12-01). Say so;
# switching it off is the machine owner's choice, not this script's.
for state in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
    if [ -r "$state" ] && [ "$(cat "$state")" = on ]; then
        echo "warning: DAMON is on ($state): kdamond preempts a core for ~10 ms every few seconds," >&2
        echo "         which makes load-generator steps inconclusive; for quiet figures run" >&2
        echo "         'echo off > $state' before and 'echo on > $state' after" >&2
    fi
done

server=""
systems=${SYSTEMS:-relay knudepunkt janus}
netns=()
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    case " $systems " in *" janus "*) benches/janus.sh stop >/dev/null 2>&1 || true ;; esac
    wait 2>/dev/null || true
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

start_server() { # name
    case $1 in
        relay)
            "${pin_server[@]}" "$bin/relay" --port 31000 --shards $shards >"$out/relay.log" 2>&1 &
            server=$!
            target=relay://127.0.0.1:31000/$shards
            ;;
        knudepunkt)
            # All load comes from one address: lift the per-address join limit.
            knd=(--http 127.0.0.1:18180 --udp-port 21000 --joins-per-second 5000)
            [ $percore = 1 ] && knd+=(--shards 1)
            "${pin_server[@]}" "$bin/signalling" "${knd[@]}" >"$out/knudepunkt.log" 2>&1 &
            server=$!
            target=http://127.0.0.1:18180
            for _ in $(seq 100); do
                python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
                    "$target/readyz" >/dev/null 2>&1 && break
                sleep 0.1
            done
            ;;
        janus)
            [ $percore = 1 ] && export JANUS_EVENT_LOOPS=1
            benches/janus.sh start >"$out/janus.log" 2>&1 || { cat "$out/janus.log" >&2; exit 2; }
            server=$(cat /tmp/knudepunkt-janus/janus.pid)
            # Every thread of Janus on core 0, as knudepunkt's.
            [ $percore = 1 ] && taskset -a -p -c 0 "$server" >/dev/null
            target=janus://127.0.0.1:8088
            netns=(ip netns exec knudepunkt-janus)
            ;;
    esac
    sleep 0.3
    kill -0 "$server" 2>/dev/null || { echo "error: $1 did not start:" >&2; cat "$out/$1.log" >&2; exit 2; }
}

stop_server() {
    if [ ${#netns[@]} -gt 0 ]; then
        benches/janus.sh stop >/dev/null 2>&1 || true
    else
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    server=""
    netns=()
}

lt() { "${netns[@]}" "${pin_lt[@]}" "$bin/loadtest" "$@" --threads 1 "${lt_cpu[@]}" --target "$target"; }

declare -A cap pps cpu_us layers floor
for sys in $systems; do
    echo "== $sys: capacity search (start $start, x$factor, max $max, ${step}s steps)"
    start_server $sys
    lt capacity --start $start --factor $factor --max $max --step-duration $step \
        --report "$out/$sys-capacity.json" >"$out/$sys-capacity.out" 2>&1 || true
    c=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['details']['capacity_meetings'])" "$out/$sys-capacity.json" 2>/dev/null || echo 0)
    # A search ended by a step the load generator could not offer found a floor.
    f=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['details'].get('capacity_is_floor', False)))" "$out/$sys-capacity.json" 2>/dev/null || echo 0)
    cap[$sys]=$c
    floor[$sys]=$f
    level=$c
    [ "$level" -gt 0 ] || level=$start
    echo "   capacity $c meetings; measuring $level meetings for ${confirm}s"
    t0=$(cpu_ticks "$server")
    lt steady --meetings "$level" --duration $confirm --ramp 2 \
        --report "$out/$sys-steady.json" >"$out/$sys-steady.out" 2>&1 || true
    t1=$(cpu_ticks "$server")
    read -r p c_us mix < <(python3 - "$out/$sys-steady.json" "$(( t1 - t0 ))" "$hz" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
tl = r["timeline"]
peak = max((s["meetings"] for s in tl), default=0)
full = [s["media_packets_per_s"] for s in tl if s["meetings"] == peak and s["media_packets_per_s"] > 0]
total = sum(s["media_packets_per_s"] for s in tl)  # one sample per second
pps = sorted(full)[len(full) // 2] if full else 0.0
cpu_us = ticks / hz * 1e6 / total if total else 0.0
frames = r.get("video_layer_frames", [0, 0, 0])
mix = "/".join(f"{100 * f / max(sum(frames), 1):.0f}" for f in frames)
print(f"{pps:.0f} {cpu_us:.2f} {mix}")
EOF
)
    pps[$sys]=$p
    cpu_us[$sys]=$c_us
    layers[$sys]=$mix
    stop_server
    if [ "${p:-0}" = 0 ]; then
        echo "error: no packets delivered through $sys; see $out/$sys-steady.out" >&2
        exit 1
    fi
done

summary=$(python3 - "$(for s in $systems; do echo "$s ${cap[$s]} ${pps[$s]} ${cpu_us[$s]} ${layers[$s]} ${floor[$s]}"; done)" <<'EOF'
import sys
names = {"relay": "relay (bare UDP, no crypto)", "knudepunkt": "knudepunkt", "janus": "Janus 1.1.2 (videoroom)"}
rows = {}
for line in sys.argv[1].splitlines():
    s, c, p, u, mix, f = line.split()
    rows[s] = (int(c), float(p), float(u), mix, f == "1")
print("| system | capacity (meetings) | participants (≈2.8/meeting) | RTP media packets/s received at capacity | server CPU µs per media packet | video frames by layer q/h/f (%) |")
print("|---|---|---|---|---|---|")
for s, (c, p, u, mix, floor) in rows.items():
    # ≥: the load generator could not offer the next step (the search's floor).
    cap = f"≥ {c}" if floor else f"{c}"
    print(f"| {names[s]} | {cap} | {c * 2.8:.0f} | {p:,.0f} | {u:.2f} | {mix} |")
ratio = lambda a, b: f"{a / b:.2f}" if b else "n/a"
print()
k = rows.get("knudepunkt")
for other in ("janus", "relay"):
    o = rows.get(other)
    if k and o:
        print(f"knudepunkt/{other}: capacity {ratio(k[0], o[0])}, forwarded packets/s {ratio(k[1], o[1])}, "
              f"CPU per packet {ratio(k[2], o[2])}  ")
EOF
)
echo
echo "$summary"
echo "(reports: $out)"

if [ $quick = 0 ]; then
    {
        echo
        if [ $percore = 1 ]; then
            echo "### Capacity per core, $(date -u +%Y-%m-%d) (\`benches/capacity.sh --per-core\`, commit $(git rev-parse --short HEAD))"
            echo
            echo "Each server pinned to core 0 (\`taskset -c 0\`; knudepunkt \`--shards 1\`, the relay one shard, Janus one event loop), the load generator to core 1 (one thread). Same scenario and thresholds for each system: \`loadtest capacity --start $start --factor $factor --max $max --step-duration $step --threads 1\`, then \`steady\` at the capacity for ${confirm} s."
        else
            echo "### Capacity benchmark, $(date -u +%Y-%m-%d) (\`benches/capacity.sh\`, commit $(git rev-parse --short HEAD))"
            echo
            echo "Same scenario and thresholds for each system: \`loadtest capacity --start $start --factor $factor --max $max --step-duration $step --threads 1 --yield-cpu\`, then \`steady\` at the capacity for ${confirm} s; load generator and server on this 2-core machine."
        fi
        echo
        echo "$summary"
    } >>benches/RESULTS.md
    echo "appended to benches/RESULTS.md"
fi
