#!/usr/bin/env bash
# Installs what libqsync needs from Debian's packages, skipping what is
# already present. Sourced or run by scripts/demo.sh and scripts/test.sh.
#
# QEMU 10.0.2 comes from bookworm-backports. When that suite is missing
# from the apt sources we add it with the mirror URI the system's own
# Debian source already uses, so no host name is ever written here.
set -euo pipefail

need_sudo() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Packages and the command or file that proves each one is installed.
pkgs_wanted=(
    cmake pkg-config libuv1-dev libcmocka-dev gcc libc6-dev-i386 cpio
    g++ libsystemc-dev clang libclang-rt-14-dev lld strace gnuplot-nox
    libpcap-dev tcpdump
    qemu-system-x86 qemu-system-arm qemu-system-data libns3-dev openmpi-bin libopenmpi-dev
)

missing_pkgs() {
    local p out=()
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            out+=("$p")
        fi
    done
    echo "${out[@]:-}"
}

qemu_is_backports() {
    local v p
    for p in qemu-system-x86 qemu-system-arm; do
        v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
        case "$v" in 1:10.*|10.*) ;; *) return 1 ;; esac
    done
}

# The aarch64 demo guest's kernel and busybox are arm64 packages, fetched
# with apt-get download (never installed): apt needs that architecture's
# package lists.
has_arm64() {
    dpkg --print-foreign-architectures | grep -qx arm64
}

has_backports_source() {
    grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

# Prints the first Debian archive URI the system already uses.
system_mirror_uri() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return 0; fi
    done
    if [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/ && $i !~ /security/) { print $i; exit } }' /etc/apt/sources.list)
        if [ -n "$uri" ]; then echo "$uri"; return 0; fi
    fi
    return 1
}

add_backports() {
    local uri
    if ! uri=$(system_mirror_uri); then
        echo "setup: cannot find the Debian mirror in /etc/apt/sources.list*; add bookworm-backports by hand" >&2
        exit 2
    fi
    echo "setup: adding bookworm-backports from $uri" >&2
    need_sudo tee /etc/apt/sources.list.d/qsync-bookworm-backports.sources >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

main() {
    local missing p
    missing=$(missing_pkgs "${pkgs_wanted[@]}")
    if [ -z "$missing" ] && qemu_is_backports && has_arm64; then
        return 0
    fi
    if ! has_backports_source; then
        add_backports
    fi
    if ! has_arm64; then
        need_sudo dpkg --add-architecture arm64
    fi
    export DEBIAN_FRONTEND=noninteractive
    need_sudo apt-get update -qq
    # Everything but QEMU from bookworm; QEMU from backports.
    local base=()
    for p in $missing; do
        case "$p" in qemu-*) ;; *) base+=("$p") ;; esac
    done
    if [ ${#base[@]} -gt 0 ]; then
        need_sudo apt-get install -y -qq --no-install-recommends "${base[@]}"
    fi
    if ! qemu_is_backports; then
        need_sudo apt-get install -y -qq --no-install-recommends -t bookworm-backports \
            qemu-system-x86 qemu-system-arm qemu-system-data
    fi
}

main "$@"
