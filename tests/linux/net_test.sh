#!/bin/sh
# Boots the Linux demo guest with a NIC and qsync.ip=10.0.0.1/24 in
# lockstep at a 100 us quantum through qsync-step, with a qsync.run that
# shows the driver bound to eth0, the address on it, a frame leaving
# through the driver and the stack answering pings to its own address.
# The frame is a gratuitous ARP from 10.0.0.1: the NIC sits on a hub with
# no other port, so nobody hears it, but QEMU's filter-dump on the NIC's
# netdev writes what the NIC sent to a pcap file, where the test finds it.
# Checks that output, that the run ended with status 0 and the guest then
# powered off by itself (QEMU's exit status 0), and that every stop was
# exact.
# usage: net_test.sh QSYNC_STEP GUEST_DIR x86_64|aarch64 NIC_DEVICE
#   NIC_DEVICE: QEMU's -device for the NIC without netdev=, e.g. e1000 or
#   virtio-net-pci,ioeventfd=off,tx=timer
set -u
step=$1
dir=$2
arch=$3
nic=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$nic" in
    e1000*) driver=e1000 ;;
    virtio-net-pci*) driver=virtio_net ;;
    *) echo "net_test: unknown NIC $nic (e1000... or virtio-net-pci...)" >&2; exit 2 ;;
esac
net='qsync.ip=10.0.0.1/24 qsync.run="readlink /sys/class/net/eth0/device/driver && ip addr show eth0 && arping -U -c 1 -I eth0 10.0.0.1 && ping -c 2 -A 10.0.0.1"'
case "$arch" in
    x86_64) set -- qemu-system-x86_64 -M pc -m 256 -append "console=ttyS0 quiet panic=-1 $net" ;;
    aarch64) set -- qemu-system-aarch64 -M virt,dtb-randomness=off -cpu cortex-a57 -m 256 \
        -append "console=ttyAMA0 quiet panic=-1 $net" ;;
    *) echo "net_test: unknown arch $arch" >&2; exit 2 ;;
esac
"$step" --quantum 100us --timestamps --json "$work/run.json" -- "$@" \
    -nodefaults -display none -serial stdio -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm \
    -netdev hubport,id=n0,hubid=0 -device "$nic,netdev=n0" \
    -object "filter-dump,id=dump0,netdev=n0,file=$work/n0.pcap" \
    -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" >"$work/out" 2>"$work/err"
rc=$?
tr -d '\r' <"$work/out" >"$work/log"
fail=0
check() { # PATTERN WHAT: an extended regular expression the output must match
    grep -qE "$1" "$work/log" || { echo "FAIL: $2 (no line matches '$1')" >&2; fail=1; }
}
[ $rc -eq 0 ] || { echo "FAIL: qsync-step exited $rc" >&2; fail=1; }
check "qsync-linux: booted uptime=[0-9.]+ cpus=1 clock_ns=[0-9]+" "no boot marker"
check "qsync-linux: net up eth0 10\.0\.0\.1/24$" "the init did not bring eth0 up"
check "/drivers/$driver$" "$driver is not eth0's driver"
check "eth0: <[A-Z,_]*[<,]UP,LOWER_UP>" "eth0 is not up with a link"
check "inet 10\.0\.0\.1/24 .*eth0$" "eth0 does not have 10.0.0.1/24"
check "2 packets transmitted, 2 packets received, 0% packet loss" "the stack did not answer both pings"
check "qsync-linux: run exit=0$" "the run did not end with status 0"
# The gratuitous ARP left the NIC: the first frame in the pcap (a 24-byte
# file header, a 16-byte record header, then the frame) has ARP's
# ethertype (bytes 12-13) and 10.0.0.1 as its sender address (28-31).
frame() { # OFFSET LENGTH: the first frame's bytes, in hex
    od -A n -t x1 -j $((40 + $1)) -N "$2" "$work/n0.pcap" 2>/dev/null | tr -d ' \n'
}
if [ "$(frame 12 2)" != 0806 ] || [ "$(frame 28 4)" != 0a000001 ]; then
    echo "FAIL: the NIC sent no ARP from 10.0.0.1 (first frame: ethertype '$(frame 12 2)', sender '$(frame 28 4)')" >&2
    fail=1
fi
grep -q '"exit_status": 0,' "$work/run.json" || { echo "FAIL: QEMU did not power off cleanly" >&2; fail=1; }
grep -q '"max_overshoot_insns": 0,' "$work/run.json" || { echo "FAIL: a stop overshot" >&2; fail=1; }
if [ $fail -ne 0 ]; then
    echo "--- stdout" >&2; tail -30 "$work/log" >&2
    echo "--- stderr" >&2; tail -20 "$work/err" >&2
    exit 1
fi
grep -E 'qsync-linux|drivers|inet |packets|round-trip' "$work/log"
grep -E '"(quanta|virtual_ns|wall_s)"' "$work/run.json"
