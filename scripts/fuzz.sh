#!/usr/bin/env bash
# Fuzz every target in fuzzing/ with libFuzzer for SECONDS each (default 30).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# On the stable toolchain: cargo-fuzz's flags are nightly-only, and RUSTC_BOOTSTRAP=1
# lets stable rustc take them (the only toolchain a fresh machine has). No sanitizer:
# the product is safe Rust, and a panic is what a target finds. Corpora grow under
# target/fuzz-corpus/ (not committed), starting from fuzzing/seeds/. A crash fails the
# run and names its input: copy that file into fuzzing/regressions/TARGET/, fix the
# cause, and `cargo test -p fuzzing` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_message control_frame token forwarded sdp datagram ice_tcp sip leg_rtp config)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# The fuzz build has its own dependency tree (instrumented): keep it under target/.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
export RUSTC_BOOTSTRAP=1

for t in "${targets[@]}"; do
    corpus="target/fuzz-corpus/$t"
    mkdir -p "$corpus"
    echo "== fuzz $t for ${seconds}s"
    if ! cargo fuzz run --fuzz-dir fuzzing/fuzz --sanitizer none "$t" "$corpus" "fuzzing/seeds/$t" \
        -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2> "target/fuzz-$t.log"; then
        tail -40 "target/fuzz-$t.log" >&2
        echo "error: fuzz target $t failed: its input is the 'artifact' named above;" \
            "copy it into fuzzing/regressions/$t/ and fix the cause" >&2
        exit 1
    fi
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "target/fuzz-$t.log" | sed "s/^/   $t /"
done
