#!/usr/bin/env bash
# Check everything under deploy/:
#   - promtool: both Prometheus configs, the rules, the rules' unit tests;
#   - python3: every Kubernetes manifest parses (and validates against the API
#     schemas when `kubernetes-validate` is installed), the Grafana dashboard parses,
#     and every metric name used in PromQL (dashboard, rules, rule tests) is one the
#     binaries export (the list below, cross-checked with the crates' metrics.rs);
#   - systemd-analyze verify on the units, when systemd-analyze is there;
#   - with a `signalling` binary as $1 (and optionally an `sfu` binary as $2): start it
#     on loopback (HTTP 127.0.0.1:19080, UDP 19500+; sfu metrics 127.0.0.1:19101, UDP
#     19600+), lint a real /metrics scrape with `promtool check metrics`, stop it.
#
# usage: deploy/check.sh [path/to/signalling [path/to/sfu]]
# Runs from any directory. Installs Debian's `prometheus` package (for promtool) if
# promtool is missing. Exit status: 0 all good, 1 a check failed, 2 cannot run.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }
step() { printf '== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# Binary paths are taken relative to the caller's directory, before the cd below.
absolute() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
SIGNALLING_BIN=${1:+$(absolute "$1")}
SFU_BIN=${2:+$(absolute "$2")}
[ -z "$SIGNALLING_BIN" ] || [ -x "$SIGNALLING_BIN" ] || die "not an executable: $1"
[ -z "$SFU_BIN" ] || [ -x "$SFU_BIN" ] || die "not an executable: $2"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
need python3 || die "python3 is needed (YAML/JSON checks)"
if ! python3 -c 'import yaml' 2>/dev/null; then
    step "installing PyYAML for python3"
    python3 -m pip install -q pyyaml || die "python3 has no yaml module and pip could not install PyYAML"
fi

if ! need promtool; then
    step "installing promtool (Debian package prometheus)"
    need apt-get || die "promtool is missing and there is no apt-get to install it: install Prometheus >= 2.42 (it ships promtool) and rerun"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    # The package's post-install may try to start a prometheus service; where there is
    # no init system that is skipped, and promtool is all we need.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    need promtool || die "installed prometheus but found no promtool"
fi
promtool --version 2>&1 | head -n 1

step "promtool check config"
promtool check config deploy/prometheus/prometheus.yml
# Debian's promtool is built without Kubernetes service discovery: there, the
# in-cluster config can only be checked as far as YAML goes.
if ! out=$(promtool check config deploy/prometheus/prometheus-kubernetes.yml 2>&1); then
    if grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
        echo "note: this promtool lacks Kubernetes SD (Debian build): prometheus-kubernetes.yml only parsed as YAML"
        python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' deploy/prometheus/prometheus-kubernetes.yml
    else
        printf '%s\n' "$out" >&2
        exit 1
    fi
else
    printf '%s\n' "$out"
fi

step "promtool check rules"
promtool check rules deploy/prometheus/rules.yml

step "promtool test rules"
promtool test rules deploy/prometheus/rules_test.yml

step "manifests, dashboard, metric names (python3)"
python3 - "$ROOT" <<'PY'
import glob, json, os, re, sys

root = sys.argv[1]
os.chdir(root)
try:
    import yaml
except ImportError:
    sys.exit("error: python3 has no yaml module: pip install pyyaml (or apt-get install python3-yaml)")

# Every metric the binaries export (signalling/src/metrics.rs, sfu/src/metrics.rs).
KNOWN = {
    "sfu_bwe_estimate_bits_per_second": "histogram",
    "sfu_datagrams_dropped_total": "counter",
    "sfu_events_dropped_total": "counter",
    "sfu_join_duration_seconds": "histogram",
    "sfu_keyframe_requests_received_total": "counter",
    "sfu_keyframe_requests_sent_total": "counter",
    "sfu_layer_switches_total": "counter",
    "sfu_nacks_received_total": "counter",
    "sfu_nacks_sent_total": "counter",
    "sfu_packets_received_total": "counter",
    "sfu_packets_sent_total": "counter",
    "sfu_participants": "gauge",
    "sfu_paused_videos": "gauge",
    "sfu_peer_failures_total": "counter",
    "sfu_received_bytes_total": "counter",
    "sfu_rooms": "gauge",
    "sfu_rtp_forwarded_total": "counter",
    "sfu_sent_bytes_total": "counter",
    "sfu_shard_busy_ratio": "gauge",
    "sfu_shard_turn_seconds": "histogram",
    "sfu_tracks": "gauge",
    "sfu_udp_offload_segments": "gauge",
    "sfu_udp_send_failed_total": "counter",
    "sfu_udp_gso_refused_total": "counter",
    "sfu_udp_syscalls_total": "counter",
    "signalling_bad_messages_total": "counter",
    "signalling_join_duration_seconds": "histogram",
    "signalling_joins_total": "counter",
    "signalling_media_nodes": "gauge",
    "signalling_media_nodes_lost_total": "counter",
    "signalling_media_nodes_refused_total": "counter",
    "signalling_redis_errors_total": "counter",
    "signalling_node_events_refused_total": "counter",
    "signalling_sessions_carried_total": "counter",
    "signalling_sessions_resumed_total": "counter",
    "signalling_participants": "gauge",
    "signalling_placements_total": "counter",
    "signalling_rooms": "gauge",
    "signalling_token_rejections_total": "counter",
    "signalling_websockets_open": "gauge",
    "signalling_joins_waiting": "gauge",
    "signalling_pin_refusals_total": "counter",
    "gateway_calls_active": "gauge",
    "gateway_calls_total": "counter",
    "gateway_mix_duration_seconds": "histogram",
    "gateway_leg_loss_ratio": "histogram",
    "gateway_leg_jitter_seconds": "histogram",
    "gateway_leg_datagrams_ignored_total": "counter",
}
BUILTIN = {"up"}  # series Prometheus itself writes for every target
errors = []


def fail(msg):
    errors.append(msg)


def valid_names(recorded):
    names = set(BUILTIN) | set(recorded)
    for n, kind in KNOWN.items():
        names.add(n)
        if kind == "histogram":
            names |= {n + "_bucket", n + "_sum", n + "_count"}
    return names


# --- the list against the crates' sources (drift: a renamed metric breaks panels) ---
src = ""
for f in ("signalling/src/metrics.rs", "sfu/src/metrics.rs", "gateway/src/metrics.rs"):
    if os.path.exists(f):
        src += open(f, encoding="utf-8").read()
if src:
    in_src = set(re.findall(r'"((?:sfu|signalling|gateway)_[a-z0-9_]+)"', src))
    for n in sorted(set(KNOWN) - in_src):
        fail(f"metric {n} is in check.sh's list but not in signalling/sfu/gateway metrics.rs (renamed?)")
    for n in sorted(in_src - set(KNOWN)):
        print(f"note: {n} is exported (metrics.rs) but not in check.sh's list; add it to use it")
else:
    print("note: crates' metrics.rs not found: metric list not cross-checked with the source")

# --- PromQL metric-name extraction ------------------------------------------------
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "and", "or", "unless", "offset", "inf", "nan", "atan2"}
CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "", e)             # Grafana variables
    e = re.sub(r"\{[^}]*\}", "", e)                      # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                     # ranges, subqueries
    e = re.sub(r"\boffset\s+-?\w+", "", e)              # offsets
    e = CLAUSE.sub("", e)                                # grouping / matching clauses
    e = re.sub(r"\b(group_left|group_right)\b", "", e)
    out = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", e):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        out.add(name)
    return out


def check_exprs(where, exprs, names):
    used = set()
    for e in exprs:
        if not isinstance(e, str) or not e.strip():
            fail(f"{where}: empty expression")
            continue
        for n in metric_names(e):
            used.add(n)
            if n not in names:
                fail(f"{where}: unknown metric {n!r} in: {' '.join(e.split())}")
    return used


# --- rules ----------------------------------------------------------------------
rules = yaml.safe_load(open("deploy/prometheus/rules.yml"))
recorded, rule_exprs, alerts = set(), [], []
for g in rules["groups"]:
    for r in g["rules"]:
        rule_exprs.append(str(r["expr"]))
        if "record" in r:
            recorded.add(r["record"])
        else:
            alerts.append(r["alert"])
            ann = r.get("annotations") or {}
            if not ann.get("summary") or not ann.get("description"):
                fail(f"rules.yml: alert {r['alert']} lacks a summary or description")
            if "severity" not in (r.get("labels") or {}):
                fail(f"rules.yml: alert {r['alert']} has no severity label")
names = valid_names(recorded)
used = check_exprs("rules.yml", rule_exprs, names)

# --- rule tests: every alert tested, every input series known ----------------------
tests = yaml.safe_load(open("deploy/prometheus/rules_test.yml"))
tested, test_exprs = set(), []
for t in tests["tests"]:
    for s in t.get("input_series", []):
        test_exprs.append(s["series"])
    for a in t.get("alert_rule_test", []):
        tested.add(a["alertname"])
    for p in t.get("promql_expr_test", []):
        test_exprs.append(p["expr"])
check_exprs("rules_test.yml", test_exprs, names)
for a in alerts:
    if a not in tested:
        fail(f"rules_test.yml: alert {a} has no alert_rule_test")

# --- Kubernetes manifests ----------------------------------------------------------
manifests = sorted(glob.glob("deploy/k8s/**/*.y*ml", recursive=True))
if not manifests:
    fail("no manifests under deploy/k8s")
kinds = []
for f in manifests:
    try:
        docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{f}: {e}")
        continue
    for d in docs:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") \
                or not (d.get("metadata") or {}).get("name"):
            fail(f"{f}: a document without apiVersion/kind/metadata.name")
            continue
        kinds.append(f"{d['kind']}/{d['metadata']['name']}")
print(f"k8s: {len(manifests)} files: {', '.join(kinds)}")

# --- Grafana dashboard -------------------------------------------------------------
dash_file = "deploy/grafana/knudepunkt.json"
try:
    dash = json.load(open(dash_file))
except (OSError, ValueError) as e:
    fail(f"{dash_file}: {e}")
    dash = {"panels": []}
panels = []


def walk(ps):
    for p in ps:
        panels.append(p)
        walk(p.get("panels", []))


walk(dash.get("panels", []))
ids = [p.get("id") for p in panels]
if len(ids) != len(set(ids)):
    fail(f"{dash_file}: duplicate panel ids")
dash_exprs = []
for p in panels:
    if p.get("type") == "row":
        continue
    targets = p.get("targets") or []
    if not targets:
        fail(f"{dash_file}: panel {p.get('title')!r} has no query")
    for t in targets:
        dash_exprs.append(t.get("expr", ""))
for v in (dash.get("templating") or {}).get("list", []):
    if v.get("type") == "query":
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"\s*label_values\((.*),\s*\w+\s*\)\s*$", q)
        dash_exprs.append(m.group(1) if m else q)
used |= check_exprs(dash_file, dash_exprs, names)
print(f"dashboard: {len(panels)} panels, {len(dash_exprs)} queries")
base = {re.sub(r"_(bucket|sum|count)$", "", n) if re.sub(r"_(bucket|sum|count)$", "", n) in KNOWN else n for n in used}
unused = sorted(set(KNOWN) - base)
if not errors:
    print(f"PromQL: {len(used)} metric names used, all known")
if unused:
    print(f"note: exported but on no panel or rule: {' '.join(unused)}")

if errors:
    print("\n".join("FAIL: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

if python3 -c 'import kubernetes_validate' 2>/dev/null; then
    step "kubernetes-validate --strict (API schemas)"
    python3 -m kubernetes_validate --strict --quiet deploy/k8s/*.yaml
    echo "k8s manifests valid"
else
    echo "note: kubernetes-validate not installed: manifests parsed, not schema-checked (pip install kubernetes-validate)"
fi

if need systemd-analyze; then
    step "systemd-analyze verify"
    tmp=$(mktemp -d)
    # Verify copies whose binary and env-file paths point into a scratch dir.
    for f in deploy/systemd/*.service; do
        sed -e "s#/usr/local/bin/#$tmp/#g" -e "s#/etc/knudepunkt/#$tmp/#g" "$f" >"$tmp/$(basename "$f")"
    done
    cp "$(type -P true)" "$tmp/signalling"
    cp "$(type -P true)" "$tmp/sfu"
    cp deploy/systemd/signalling.env.example "$tmp/signalling.env"
    cp deploy/systemd/sfu.env.example "$tmp/sfu.env"
    ln -s 'knudepunkt-sfu@.service' "$tmp/knudepunkt-sfu@node-a.service"
    out=$(cd "$tmp" && systemd-analyze verify ./knudepunkt-signalling.service ./knudepunkt-sfu@node-a.service 2>&1) || {
        rm -rf "$tmp"; printf '%s\n' "$out" >&2; echo "FAIL: systemd-analyze verify" >&2; exit 1; }
    rm -rf "$tmp"
    if [ -n "$out" ]; then printf '%s\n' "$out" >&2; echo "FAIL: systemd-analyze verify warned" >&2; exit 1; fi
    echo "units verify"
else
    echo "note: systemd-analyze not installed: systemd units not verified"
fi

# --- a real scrape ------------------------------------------------------------------
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    [ -z "${LOGDIR:-}" ] || rm -rf "$LOGDIR"
}
trap cleanup EXIT
LOGDIR=$(mktemp -d)

# fetch URL OUTFILE [TRIES]: GET with retries (the process needs a moment to listen);
# prints the HTTP status.
fetch() {
    python3 - "$@" <<'PY'
import sys, time, urllib.request, urllib.error
url, out = sys.argv[1], sys.argv[2]
tries = int(sys.argv[3]) if len(sys.argv) > 3 else 50
for i in range(tries):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            open(out, "wb").write(r.read()); print(r.status); sys.exit(0)
    except urllib.error.HTTPError as e:
        open(out, "wb").write(e.read()); print(e.code); sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"no answer from {url}")
PY
}

# promtool's lint findings that are accepted, one per line, exactly as promtool prints
# them. Anything else it reports fails the check.
#   sfu_bwe_estimate_bits_per_second: Prometheus prefers base units (bytes), but
#   bandwidth estimates are bits per second throughout WebRTC (REMB, TWCC, the
#   allocator's layer bitrates); renaming is the crate's call and would change the
#   metric the dashboard and ARCHITECTURE.md use.
ACCEPTED_LINT='sfu_bwe_estimate_bits_per_second use base unit "bytes" instead of "bits"'

# scrape NAME URL: lint a /metrics page and list its knudepunkt families.
# (Called as `scrape ... || ...`, where set -e is off: every step checks itself.)
scrape() {
    local name=$1 url=$2 page="$LOGDIR/$1.metrics" status out rc=0 line
    status=$(fetch "$url" "$page") || return 1
    [ "$status" = 200 ] || { echo "FAIL: $url answered $status" >&2; return 1; }
    out=$(promtool check metrics <"$page" 2>&1) || rc=$?
    # 0: clean; 3: lint findings (checked against the accepted list); else: unparsable.
    if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
        printf '%s\n' "$out" >&2; echo "FAIL: promtool check metrics: exit $rc" >&2; return 1
    fi
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        if grep -qxF -- "$line" <<<"$ACCEPTED_LINT"; then
            echo "promtool check metrics: accepted lint: $line"
        else
            echo "FAIL: promtool check metrics: $line" >&2; rc=1
        fi
    done <<<"$out"
    [ "$rc" != 1 ] || return 1
    echo "promtool check metrics: $name page OK ($(grep -c -v '^#' "$page") samples)"
    python3 - "$page" <<'PY' || return 1
import re, sys
fams = sorted({m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", open(sys.argv[1]).read(), re.M)})
print(f"{len(fams)} metric families: {' '.join(fams)}")
PY
}

if [ -n "$SIGNALLING_BIN" ]; then
    step "live scrape: $SIGNALLING_BIN on 127.0.0.1:19080"
    args=(--http 127.0.0.1:19080 --shards 1)
    help=$("$SIGNALLING_BIN" --help)
    if grep -q -- '--udp-port' <<<"$help"; then
        args+=(--udp-port 19500)
    else
        echo "note: this signalling has no --udp-port: its media shard uses the default port"
    fi
    "$SIGNALLING_BIN" "${args[@]}" >"$LOGDIR/signalling.log" 2>&1 &
    PIDS+=($!)
    scrape signalling http://127.0.0.1:19080/metrics || { cat "$LOGDIR/signalling.log" >&2; exit 1; }
    status=$(fetch http://127.0.0.1:19080/readyz "$LOGDIR/readyz")
    echo "/readyz: $status $(cat "$LOGDIR/readyz")"
    [ "$status" = 200 ] || { echo "FAIL: /readyz with the embedded media node: $status" >&2; exit 1; }
    status=$(fetch http://127.0.0.1:19080/healthz "$LOGDIR/healthz")
    [ "$status" = 200 ] || { echo "FAIL: /healthz: $status" >&2; exit 1; }
    echo "/healthz: $status"
fi
if [ -n "$SFU_BIN" ]; then
    step "live scrape: $SFU_BIN metrics on 127.0.0.1:19101"
    "$SFU_BIN" --metrics 127.0.0.1:19101 --port 19600 --shards 1 >"$LOGDIR/sfu.log" 2>&1 &
    PIDS+=($!)
    scrape sfu http://127.0.0.1:19101/metrics || { cat "$LOGDIR/sfu.log" >&2; exit 1; }
fi

step "all deploy checks passed"
