#!/usr/bin/env bash
# Installs what is missing, builds (the Linux guest is assembled from
# Debian's packages on the way), then boots Linux in lockstep with
# qsync-step at a 100 us quantum and prints the statistics.
# usage: scripts/demo.sh [BUILD_DIR]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}

"$here/scripts/setup.sh"
echo "== building (first time: fetches the kernel and busybox .debs)"
cmake -S "$here" -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

step=$build/bin/qsync-step
linux=$build/guests/linux-amd64
guest=$build/tests/guest/qsync-guest.elf

echo "== 5 ms of the project's bare-metal compute guest, in exact 10 us quanta"
"$step" --quantum 10us --until 5ms --stats -- qemu-system-x86_64 -M pc -nodefaults \
    -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$guest" -append "compute 100000000"
echo
echo "== Debian's Linux kernel with a busybox initramfs, booted in lockstep at 100 us"
echo "   (each guest line is stamped with the virtual time of its quantum's end;"
echo "    clock_ns is the guest's own clock when it wrote the marker)"
"$step" --quantum 100us --timestamps --stats --json - -- qemu-system-x86_64 -M pc -m 256 \
    -nodefaults -display none -serial stdio -no-reboot \
    -rtc base=2020-01-01T00:00:00,clock=vm -kernel "$linux/vmlinuz" \
    -initrd "$linux/initramfs.cpio.gz" -append "console=ttyS0 quiet panic=-1"
