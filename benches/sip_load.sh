#!/usr/bin/env bash
# The SIP gateway under load: CALLS concurrent PCMA calls (sipp playing the packaged
# A-law pcap for 24 s, benches/sip/talk.xml), five to a room, into `signalling --sip`
# (release build, dev mode, one shard). The server is pinned to core 0, sipp to core 1.
#
#   benches/sip_load.sh [CALLS]     (default 50)
#
# Measured over the steady window, while every call is up: the server's CPU per call
# leg, against the same server idle for as long just before (the baseline in the same
# run: what the node costs with no calls); the p99 of one leg's 20 ms mix
# (gateway_mix_duration_seconds, an upper bucket bound); calls answered and failed.
# Prints a summary and a JSON line (append both to benches/RESULTS.md by hand).
set -euo pipefail
cd "$(dirname "$0")/.."

calls="${1:-50}"
per_room=5
rooms=$(( (calls + per_room - 1) / per_room ))
command -v sipp >/dev/null || { echo "error: sipp missing (Debian's sip-tester)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "error: taskset missing (util-linux)" >&2; exit 2; }
[ -f /usr/share/sip-tester/g711a.pcap ] || { echo "error: /usr/share/sip-tester/g711a.pcap missing (sip-tester)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "error: needs two cores (server and sipp apart)" >&2; exit 2; }

cargo build -q --release --bin signalling
out=$(mktemp -d /tmp/knudepunkt-sip-load.XXXXXX)
hz=$(getconf CLK_TCK)
sip_port=$(( 20000 + RANDOM % 20000 ))

taskset -c 0 target/release/signalling --http 127.0.0.1:0 --udp-port 0 --shards 1 \
    --sip "127.0.0.1:$sip_port" > "$out/node.out" 2> "$out/node.err" &
node=$!
trap 'kill $node 2>/dev/null || true; pkill -P $$ sipp 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "http://" "$out/node.out" 2>/dev/null && grep -q "SIP gateway on" "$out/node.err" && break
    sleep 0.1
done
http=$(grep -o 'http://[0-9.:]*' "$out/node.out" | head -1)
[ -n "$http" ] || { echo "error: the node did not start:" >&2; cat "$out/node.err" >&2; exit 1; }

cpu() { awk '{ print $14 + $15 }' "/proc/$node/stat"; }
# The baseline: the node idle for the window's length.
window=12
idle0=$(cpu); sleep "$window"; idle1=$(cpu)

echo "== $calls calls in $rooms rooms of $per_room"
sipps=()
for r in $(seq "$rooms"); do
    n=$per_room
    [ $(( r * per_room )) -le "$calls" ] || n=$(( calls - (r - 1) * per_room ))
    taskset -c 1 sipp "127.0.0.1:$sip_port" -sf benches/sip/talk.xml -s "load$r" \
        -i 127.0.0.1 -p $(( sip_port + 100 + r * 10 )) -mp $(( sip_port + 2000 + r * 40 )) \
        -m "$n" -l "$n" -r 10 -nostdin -timeout 90s -timeout_error \
        > "$out/sipp$r.out" 2>&1 &
    sipps+=($!)
done
# Calls start within a few seconds and talk for 24 s: measure from 8 s to 8 + window.
sleep 8
busy0=$(cpu); sleep "$window"; busy1=$(cpu)
wait_sipp=0
for p in "${sipps[@]}"; do wait "$p" || wait_sipp=1; done
sleep 1
curl -s "$http/metrics" > "$out/metrics"

python3 - "$calls" "$window" "$hz" "$idle0" "$idle1" "$busy0" "$busy1" "$wait_sipp" "$out/metrics" <<'PY'
import json, re, sys
calls, window, hz = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
idle = (int(sys.argv[5]) - int(sys.argv[4])) / hz
busy = (int(sys.argv[7]) - int(sys.argv[6])) / hz
sipp_failed = sys.argv[8] == "1"
metrics = open(sys.argv[9]).read()
def value(pattern):
    m = re.search(pattern + r" ([0-9.e+-]+)", metrics)
    return float(m.group(1)) if m else 0.0
answered = value(r'gateway_calls_total\{result="answered"\}')
failed = sum(value(r'gateway_calls_total\{result="%s"\}' % r) for r in ("failed", "dropped", "refused"))
buckets = sorted((float(le), float(n)) for le, n in re.findall(
    r'gateway_mix_duration_seconds_bucket\{le="([0-9.e+-]+)"\} ([0-9.e+-]+)', metrics))
total = value("gateway_mix_duration_seconds_count")
p99 = next((le for le, n in buckets if total and n >= 0.99 * total), float("nan"))
per_leg_s = (busy - idle) / window / calls
report = {
    "calls": calls, "answered": answered, "failed": failed, "sipp_failed": sipp_failed,
    "window_s": window, "server_cpu_busy": busy / window, "server_cpu_idle": idle / window,
    "cpu_per_leg_core_share": per_leg_s, "cpu_per_leg_us_per_20ms": per_leg_s * 20_000,
    "legs_per_core": 1 / per_leg_s if per_leg_s > 0 else None,
    "mix_p99_le_s": p99, "mixes": total,
}
print(f"calls answered {answered:.0f} of {calls}, failed {failed:.0f}, sipp {'FAILED' if sipp_failed else 'ok'}")
print(f"server CPU: {busy / window:.1%} of a core with the calls up, {idle / window:.1%} idle before")
print(f"per leg: {per_leg_s:.2%} of a core ({per_leg_s * 20_000:.0f} us per 20 ms): {report['legs_per_core']:.0f} legs a core")
print(f"mix p99 <= {p99 * 1000:.2f} ms (of {total:.0f} mixes)")
print(json.dumps(report))
PY
