#!/usr/bin/env bash
# SIP legs with video under load, judged by the quality thresholds: the same steady
# load twice in one command, first all WebRTC (the baseline), then with SHARE percent
# of the participants dialling in as plain-RTP SIP legs (PCMA and one VP8 video with
# probes) through the gateway in the same process (`signalling --sip`, release build,
# dev mode, one shard) pinned to core 0; the load generator pinned to core 1.
#
#   benches/sip_share.sh [MEETINGS] [SECONDS] [SHARE]     (default 20 60 20)
#
# Prints each run's verdict, delays, the SIP legs' picture delay and mix jitter, the
# node's CPU (share of core 0 over the run), and the difference per SIP leg. Reports
# go to /tmp/knudepunkt-sip-share.*/{webrtc,sip}.json.
set -euo pipefail
cd "$(dirname "$0")/.."

meetings="${1:-20}"
seconds="${2:-60}"
share="${3:-20}"
command -v taskset >/dev/null || { echo "error: taskset missing (util-linux)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "error: needs two cores (server and load generator apart)" >&2; exit 2; }

cargo build -q --release --bin signalling --bin loadtest
out=$(mktemp -d /tmp/knudepunkt-sip-share.XXXXXX)
hz=$(getconf CLK_TCK)

run() {
    local name=$1 pct=$2
    local sip_port=$(( 20000 + RANDOM % 20000 ))
    taskset -c 0 target/release/signalling --http 127.0.0.1:0 --udp-port 0 --shards 1 \
        --sip "127.0.0.1:$sip_port" > "$out/$name.node.out" 2> "$out/$name.node.err" &
    local node=$!
    trap "kill $node 2>/dev/null || true" EXIT
    for _ in $(seq 100); do
        grep -q "http://" "$out/$name.node.out" 2>/dev/null && break
        sleep 0.1
    done
    local http
    http=$(grep -o 'http://[0-9.:]*' "$out/$name.node.out" | head -1)
    [ -n "$http" ] || { echo "error: the node did not start:" >&2; cat "$out/$name.node.err" >&2; exit 1; }
    local t0 w0 t1 w1
    t0=$(awk '{ print $14 + $15 }' "/proc/$node/stat"); w0=$(date +%s.%N)
    taskset -c 1 target/release/loadtest --threads 1 steady --target "$http" \
        --meetings "$meetings" --duration "$seconds" --ramp 5 \
        --sip "127.0.0.1:$sip_port" --sip-share "$pct" \
        --report "$out/$name.json" > /dev/null 2> "$out/$name.log" || true
    t1=$(awk '{ print $14 + $15 }' "/proc/$node/stat"); w1=$(date +%s.%N)
    kill $node 2>/dev/null || true
    wait $node 2>/dev/null || true
    python3 - "$name" "$out/$name.json" "$(( t1 - t0 ))" "$hz" "$w0" "$w1" <<'PY'
import json, sys
name, path, ticks, hz, w0, w1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
r = json.load(open(path))
cpu = 100.0 * ticks / hz / (w1 - w0)
sip = r.get("sip_legs") or {}
verdict = "INCONCLUSIVE" if not r["valid"] else ("PASSED" if r["passed"] else "FAILED")
print(f"{name:7} {verdict:12} meetings {r['meetings_passed']}/{r['meetings_started']}  peak {r['participants_peak']} ppl  "
      f"delay p50/p99 {r['delay_ms']['p50']:.1f}/{r['delay_ms']['p99']:.1f} ms  loss max {r['loss_pct']['max']:.2f}%  "
      f"node CPU {cpu:.1f}% of core 0", end="")
if sip:
    d = sip["picture_delay_p99_ms"]
    print(f"  SIP legs {sip['legs']}: picture p99 {d['p50']:.1f}/{d['p99']:.1f} ms (p50/p99 of legs), "
          f"mix jitter p99 max {sip['mix_jitter_p99_max_ms']:.1f} ms", end="")
print()
for f in r["failures"][:3]:
    print("   ", f[:300])
json.dump({"name": name, "cpu_pct": cpu, "legs": sip.get("legs", 0)}, open(path + ".cpu", "w"))
PY
}

echo "== steady --meetings $meetings --duration $seconds: WebRTC only, then $share% SIP legs"
run webrtc 0
run sip "$share"
python3 - "$out/webrtc.json.cpu" "$out/sip.json.cpu" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
if b["legs"]:
    per = (b["cpu_pct"] - a["cpu_pct"]) / b["legs"]
    print(f"node CPU per SIP leg in place of a WebRTC participant: {per:+.2f}% of a core "
          f"({a['cpu_pct']:.1f}% -> {b['cpu_pct']:.1f}% with {b['legs']} legs)")
    print(json.dumps({"webrtc_cpu_pct": a["cpu_pct"], "sip_cpu_pct": b["cpu_pct"], "legs": b["legs"], "per_leg_pct": per}))
PY
echo "reports: $out"
