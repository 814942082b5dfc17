#!/usr/bin/env bash
# README's serve command: on a fresh machine with only the Rust toolchain, installs
# what the build needs (scripts/prerequisites.sh), then runs the signalling node with
# its embedded media node and SIP gateway; arguments go to `signalling` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prerequisites.sh
build_prerequisites
exec cargo run --release -p signalling -- "$@"
