#!/usr/bin/env bash
# Best-effort provisioning of OpenBLAS (pthread flavour) for perceiver4j tests and benchmarks.
#
# Unpacks the Debian package libopenblas0-pthread (and, if the system lacks it, libgfortran5)
# into ${XDG_CACHE_HOME:-$HOME/.cache}/perceiver4j/openblas/ without root: `apt-get download`
# fetches the .deb into a temp dir, `dpkg -x` unpacks it. CblasSgemm.load() searches that
# directory for libopenblas*.so* and loads any libgfortran*.so* found there first, so no
# LD_LIBRARY_PATH is needed.
#
# Prints the path of the unpacked library on stdout. Everything is optional: on failure it warns
# on stderr and exits 0 (the Java side then falls back to the pure-Java SGEMM).
set -u

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/perceiver4j/openblas"

warn() { echo "fetch-openblas: warning: $*" >&2; }

find_lib() {
    find "$CACHE_DIR" \( -type f -o -type l \) -name 'libopenblas*.so*' 2>/dev/null | sort | head -n 1
}

existing="$(find_lib)"
if [ -n "$existing" ]; then
    echo "$existing"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    warn "apt-get/dpkg not available; install OpenBLAS yourself (or set -Dperceiver4j.cblas=/path/to/lib)"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

download() { # $1 = package name; downloads into $tmp, retrying once after `apt-get update`
    if (cd "$tmp" && apt-get download -qq "$1" >/dev/null 2>&1); then return 0; fi
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download -qq "$1" >/dev/null 2>&1)
}

if ! download libopenblas0-pthread; then
    warn "could not 'apt-get download libopenblas0-pthread'; OpenBLAS stays unavailable (optional)"
    exit 0
fi

mkdir -p "$CACHE_DIR"
for deb in "$tmp"/libopenblas0-pthread*.deb; do
    dpkg -x "$deb" "$CACHE_DIR" || { warn "dpkg -x $deb failed"; exit 0; }
done

lib="$(find_lib)"
if [ -z "$lib" ]; then
    warn "package unpacked but no libopenblas*.so* found under $CACHE_DIR"
    exit 0
fi

# The library links against libgfortran.so.5; fetch it too when the system loader cannot resolve it.
if command -v ldd >/dev/null 2>&1 && ldd "$lib" 2>/dev/null | grep -q 'not found'; then
    if download libgfortran5; then
        for deb in "$tmp"/libgfortran5*.deb; do dpkg -x "$deb" "$CACHE_DIR" || warn "dpkg -x $deb failed"; done
    else
        warn "libgfortran5 is missing and could not be downloaded; loading $lib may fail"
    fi
    missing="$(LD_LIBRARY_PATH="$(dirname "$(find "$CACHE_DIR" -name 'libgfortran.so.5*' | head -n 1)" 2>/dev/null)" \
               ldd "$lib" 2>/dev/null | grep 'not found' || true)"
    [ -n "$missing" ] && warn "unresolved dependencies of $lib: $missing"
fi

echo "$lib"
