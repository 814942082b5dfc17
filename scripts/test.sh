#!/usr/bin/env bash
# The project's test command: what CI runs, and what a newcomer runs on a fresh
# machine with only the Rust toolchain. Installs what the tests need, then checks
# formatting, lints and every test. Fails loudly; never skips silently.
set -euo pipefail
cd "$(dirname "$0")/.."

# A full check from scratch gains nothing from incremental state, which would double
# the debug build's size on disk; a caller may still ask for it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
# A run from scratch writes about 3 GB under the target directory at most (1.3 GB of
# debug builds, then 1.7 GB for fuzzing, freed before 1.4 GB of optimised (profile ci) builds;
# measured on a clean clone): say so up front rather than failing mid-compile.
free_kb=$(df -Pk "$target_dir" | awk 'NR == 2 { print $4 }')
echo "== $(date +%T) disk: $((free_kb / 1024)) MB free under $target_dir"
if [ "$free_kb" -lt $((4 * 1024 * 1024)) ]; then
    echo "warning: less than 4 GB free under $target_dir; the build may run out of space" >&2
fi

. scripts/prerequisites.sh
# cmake, perl and make: libopus and OpenSSL are built from source.
build_prerequisites
# The fuzz and optimised builds link Debian's OpenSSL instead of building it again (the
# `vendored` feature honours OPENSSL_NO_VENDOR; its build script takes 161 s of a 2-core
# machine in each profile). The tests proper (the dev build: DTLS with browsers,
# GStreamer, RSA peers) run with the OpenSSL the product ships, built from source.
dpkg -s libssl-dev >/dev/null 2>&1 && need pkg-config || apt_install libssl-dev pkg-config
# libFuzzer (the fuzz targets' driver) is C++.
need c++ || apt_install g++
# The browser tests drive Debian's Chromium with playwright-core and Debian's Firefox
# ESR with puppeteer-core over WebDriver BiDi (no browser download): all installed here.
[ -x /usr/bin/chromium ] || apt_install chromium
[ -x /usr/bin/firefox-esr ] || apt_install firefox-esr
need node && need npm || apt_install nodejs npm
# GStreamer's webrtcbin, a third-party WebRTC stack, publishes through WHIP in the tests
# (driven from Python: Debian's python3-gi).
/usr/bin/python3 -c "import gi; gi.require_version('GstWebRTC', '1.0'); from gi.repository import GstWebRTC" 2>/dev/null \
    && gst-inspect-1.0 webrtcbin >/dev/null 2>&1 && gst-inspect-1.0 nicesrc >/dev/null 2>&1 \
    && gst-inspect-1.0 vp8enc >/dev/null 2>&1 && gst-inspect-1.0 opusenc >/dev/null 2>&1 \
    || apt_install python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 \
        gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
        gstreamer1.0-nice
# The GStreamer test names its certificate's key type with the openssl command.
need openssl || apt_install openssl
# The lossy-link, ICE-TCP and Firefox tests join two network namespaces by a veth
# pair, thinning or dropping its UDP with nftables (they need root, as CI has).
need ip || apt_install iproute2
[ -x /usr/sbin/nft ] || need nft || apt_install nftables
[ -x /usr/sbin/ethtool ] || need ethtool || apt_install ethtool
# The TURN test relays two Chromium pages through coturn.
[ -x /usr/bin/turnserver ] || apt_install coturn
[ -x /usr/bin/baresip ] || apt_install baresip-core
# baresip's H.264 (avcodec: libx264 and FFmpeg's decoder) for the SIP video tests.
[ -f /usr/lib/baresip/modules/avcodec.so ] || apt_install baresip-ffmpeg
[ -x /usr/bin/sipp ] || apt_install sip-tester
# Several signalling nodes share their state in a real Redis (signalling --redis).
[ -x /usr/bin/redis-server ] || apt_install redis-server
(cd signalling/tests/browser && npm ci --no-audit --no-fund --silent)

echo "== $(date +%T) cargo fmt --check"
cargo fmt --all --check
echo "== $(date +%T) cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== $(date +%T) the signalling node without its embedded media node: builds, and compiles no str0m"
cargo clippy -p signalling --no-default-features -- -D warnings
if cargo tree -p signalling --no-default-features -e normal | grep -q 'str0m'; then
    echo "error: signalling built without the embedded-node feature still depends on str0m" >&2
    exit 1
fi
echo "== $(date +%T) cargo test"
# --all-targets also runs each criterion benchmark once, in test mode (no timing).
cargo test --workspace --all-targets
echo "== $(date +%T) fuzzing: every target for 5 s (libFuzzer on stable; seeds and past crashes are replayed by cargo test)"
OPENSSL_NO_VENDOR=1 ./scripts/fuzz.sh 5
# Its instrumented build is 1.7 GB: free it before the optimised build.
rm -rf "${CARGO_TARGET_DIR:-target}/fuzz"
echo "== $(date +%T) the quarter replay, in optimised builds (profile ci: quality is real-time, debug builds measure themselves)"
# One build for the binaries and the test: built apart, the test's build (dev-dependencies'
# features unified in) compiled much of the tree again, 88 s of CI's run.
OPENSSL_NO_VENDOR=1 cargo build --profile ci --bin signalling --bin loadtest --test quarter
OPENSSL_NO_VENDOR=1 cargo test --profile ci --workspace --test quarter
echo "== $(date +%T) deploy/ (Prometheus rules and their unit tests, manifests, dashboard, live /metrics lint)"
# cargo test built both binaries in debug: lint what they really export.
deploy/check.sh target/debug/signalling target/debug/sfu
echo "== $(date +%T) benches/capacity.sh --quick --per-core (the per-core capacity command works; no figures recorded)"
benches/capacity.sh --quick --per-core
