# Sourced by serve.sh and test.sh: `need` tells whether a program is on PATH,
# `apt_install` installs Debian packages (as root, or through sudo), or stops with a
# clear message where there is no apt-get.
need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
    if ! need apt-get; then
        echo "error: $* missing and no apt-get to install it; install it and rerun" >&2
        exit 2
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing $* (Debian packages)" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
# What building the node needs beyond the Rust toolchain: cmake builds libopus (the
# SIP gateway's and the load generator's Opus), perl and make build OpenSSL from source
# (the `openssl` crate's `vendored` feature: the node's DTLS), a C compiler both.
build_prerequisites() {
    local missing=()
    need cmake || missing+=(cmake)
    need make || missing+=(make)
    # Debian's perl-base alone lacks the modules OpenSSL's Configure uses (IPC::Cmd).
    perl -MIPC::Cmd -e1 2>/dev/null || missing+=(perl)
    need cc || missing+=(gcc)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}
