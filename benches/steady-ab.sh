#!/usr/bin/env bash
# A/B of two builds under the same load, in one command: each build's signalling
# (embedded media node) is loaded by the same build's `loadtest steady`, one after the
# other on this machine, and the figures are printed side by side.
#
#   benches/steady-ab.sh BASELINE_DIR CANDIDATE_DIR [MEETINGS] [SECONDS]
#
# Each *_DIR holds `signalling` and `loadtest` binaries (e.g. a copy of target/release
# from an older commit). Reports go to /tmp/steady-ab-{baseline,candidate}.json.
set -euo pipefail
base=${1:?baseline dir}
cand=${2:?candidate dir}
meetings=${3:-40}
seconds=${4:-20}
port=18080

run() {
    local name=$1 dir=$2
    "$dir/signalling" --http 127.0.0.1:$port >/tmp/steady-ab-$name.log 2>&1 &
    local sig=$!
    trap "kill $sig 2>/dev/null || true" EXIT
    sleep 0.3
    kill -0 $sig 2>/dev/null || { echo "error: $dir/signalling did not start:" >&2; cat /tmp/steady-ab-$name.log >&2; exit 2; }
    for _ in $(seq 50); do
        curl -sf http://127.0.0.1:$port/readyz >/dev/null && break
        sleep 0.1
    done
    local t0
    t0=$(awk '{print $14+$15}' /proc/$sig/stat)
    local lt_cpu
    /usr/bin/time -o /tmp/steady-ab-$name.time -f "%U %S" "$dir/loadtest" steady \
        --target http://127.0.0.1:$port --meetings "$meetings" --duration "$seconds" \
        --ramp 5 --threads 1 --report /tmp/steady-ab-$name.json >/dev/null 2>&1 || true
    lt_cpu=$(tail -1 /tmp/steady-ab-$name.time)
    local t1
    t1=$(awk '{print $14+$15}' /proc/$sig/stat)
    local hz
    hz=$(getconf CLK_TCK)
    python3 - "$name" /tmp/steady-ab-$name.json "$(( t1 - t0 ))" "$hz" "$lt_cpu" <<'EOF'
import json, sys
name, path, ticks, hz, lt = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
r = json.load(open(path))
node_cpu = ticks / hz
lt_cpu = float(lt[0]) + float(lt[1])
print(f"{name:10} passed {r['meetings_passed']:>4}/{r['meetings_started']:<4} "
      f"peak {r['participants_peak']:>4} ppl  delay p50/p99 {r['delay_ms']['p50']:.1f}/{r['delay_ms']['p99']:.1f} ms  "
      f"loss max {r['loss_pct']['max']:.2f}%  node CPU {node_cpu:.1f} s  loadtest CPU {lt_cpu:.1f} s")
EOF
    kill $sig 2>/dev/null || true
    wait $sig 2>/dev/null || true
}

echo "steady --meetings $meetings --duration $seconds (loadtest --threads 1, node with one shard per core)"
run baseline "$base"
run candidate "$cand"
