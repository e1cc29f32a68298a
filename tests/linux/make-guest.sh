#!/usr/bin/env bash
# Builds the Linux demo guest from Debian's packages into DEST, once:
#   DEST/vmlinuz          the kernel, from the linux-image .deb
#   DEST/initramfs.cpio.gz  busybox-static plus our init (tests/linux/init),
#                         bin/guest-clock (tests/linux/guest-clock.c) and
#                         the NIC drivers' modules from the same kernel
#                         package, in lib/modules/ (the init loads them
#                         when the kernel command line has qsync.ip=)
# Nothing is installed on the system: the .debs are fetched with
# `apt-get download` and unpacked with `dpkg -x`. guest-clock is compiled
# here with clang and lld, for either architecture from any host.
# usage: make-guest.sh DEST [amd64|arm64]
set -euo pipefail
dest=$1
arch=${2:-amd64}
here=$(cd "$(dirname "$0")" && pwd)

case "$arch" in
    amd64) kernel_glob='boot/vmlinuz-*'; clang_target=x86_64-linux-gnu ;;
    arm64) kernel_glob='boot/vmlinuz-*'; clang_target=aarch64-linux-gnu ;;
    *) echo "make-guest: unknown architecture '$arch' (amd64 or arm64)" >&2; exit 2 ;;
esac

if [ -s "$dest/vmlinuz" ] && [ -s "$dest/initramfs.cpio.gz" ] &&
    [ "$dest/initramfs.cpio.gz" -nt "$here/init" ] &&
    [ "$dest/initramfs.cpio.gz" -nt "$here/guest-clock.c" ] &&
    [ "$dest/initramfs.cpio.gz" -nt "$here/make-guest.sh" ]; then
    exit 0
fi
for tool in apt-get dpkg cpio gzip; do
    command -v "$tool" >/dev/null || { echo "make-guest: '$tool' is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
command -v clang >/dev/null || {
    echo "make-guest: 'clang' is missing: it builds guest-clock for the guest; apt-get install clang lld (scripts/setup.sh installs them)" >&2
    exit 2
}
command -v ld.lld >/dev/null || {
    echo "make-guest: 'ld.lld' is missing: it links guest-clock for the guest; apt-get install lld (scripts/setup.sh installs it)" >&2
    exit 2
}
mkdir -p "$dest"
work=$(mktemp -d "$dest/.work-XXXXXX")
trap 'rm -rf "$work"' EXIT

# The guest's clock reader: freestanding (no libc, raw system calls), so
# one clang builds it for both architectures without a cross sysroot.
clang --target="$clang_target" -O2 -Wall -Wextra -Werror -ffreestanding -fno-builtin \
    -fno-stack-protector -fno-pic -fno-asynchronous-unwind-tables -nostdlib -static \
    -fuse-ld=lld -Wl,--build-id=none -o "$work/guest-clock" "$here/guest-clock.c" || {
    echo "make-guest: cannot build guest-clock for $clang_target (needs clang and lld)" >&2
    exit 2
}

# The metapackage names the current kernel package.
meta=linux-image-$arch
suffix=""
[ "$arch" = "$(dpkg --print-architecture)" ] || suffix=":$arch"
kpkg=$(apt-cache depends "$meta$suffix" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { sub(":.*", "", $2); print $2; exit }')
if [ -z "$kpkg" ]; then
    echo "make-guest: cannot resolve $meta$suffix (is the $arch package list available? scripts/setup.sh adds it)" >&2
    exit 2
fi
echo "make-guest: fetching $kpkg and busybox-static ($arch)" >&2
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg$suffix" "busybox-static$suffix" >/dev/null) || {
    echo "make-guest: apt-get download failed for $kpkg$suffix busybox-static$suffix" >&2
    exit 2
}
mkdir -p "$work/kernel" "$work/bb" "$work/root"
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
dpkg -x "$work"/busybox-static_*.deb "$work/bb"
# shellcheck disable=SC2086
kernel=$(ls $work/kernel/$kernel_glob | head -n 1)
[ -s "$kernel" ] || { echo "make-guest: no kernel in $kpkg" >&2; exit 2; }

root=$work/root
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules"
cp "$work/bb/bin/busybox" "$root/bin/busybox"

# The NIC drivers (e1000, and virtio-net with what it needs), as the
# kernel package has them: plain .ko files, signed by Debian. The init
# loads them with insmod in this order, each after the modules it depends
# on, skipping those the kernel has built in (virtio and virtio_ring on
# arm64); modules.builtin says which those are.
kdirs=("$work"/kernel/lib/modules/*/)
kdir=${kdirs[0]}
for m in e1000 virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
    failover net_failover virtio_net; do
    ko=$(find "$kdir/kernel" -name "$m.ko" | head -n 1)
    if [ -n "$ko" ]; then
        cp "$ko" "$root/lib/modules/$m.ko"
    elif ! grep -q "/$m\.ko\$" "$kdir/modules.builtin"; then
        echo "make-guest: $kpkg has no module $m.ko, and it is not built in" >&2
        exit 2
    fi
done
cp "$work/guest-clock" "$root/bin/guest-clock"
cp "$here/init" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox" "$root/bin/guest-clock"
chmod 0644 "$root"/lib/modules/*.ko
# Byte-identical in every build: fixed file times too (cpio's
# --reproducible leaves them), so a boot is the same in any build tree.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --reproducible -R 0:0) |
    gzip -9 -n >"$work/initramfs.cpio.gz"
cp "$kernel" "$work/vmlinuz"
mv "$work/vmlinuz" "$dest/vmlinuz"
mv "$work/initramfs.cpio.gz" "$dest/initramfs.cpio.gz"
echo "$kpkg" >"$dest/kernel-package"
echo "make-guest: $dest/vmlinuz ($kpkg), $dest/initramfs.cpio.gz" >&2
