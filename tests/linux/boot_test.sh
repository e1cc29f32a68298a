#!/bin/sh
# Boots the Linux demo guest in lockstep at a 100 us quantum through
# qsync-step and checks the marker, a clean power-off, and exact stops.
# usage: boot_test.sh QSYNC_STEP GUEST_DIR x86_64|aarch64 [SMP]
set -u
step=$1
dir=$2
arch=$3
smp=${4:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$arch" in
    x86_64) set -- qemu-system-x86_64 -M pc -m 256 -append "console=ttyS0 quiet panic=-1" ;;
    aarch64) set -- qemu-system-aarch64 -M virt -cpu cortex-a57 -m 256 \
        -append "console=ttyAMA0 quiet panic=-1" ;;
    *) echo "boot_test: unknown arch $arch" >&2; exit 2 ;;
esac
"$step" --quantum 100us --stats --json "$work/run.json" -- "$@" -smp "$smp" -nodefaults -display none \
    -serial stdio -no-reboot -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" \
    >"$work/out" 2>"$work/err"
rc=$?
fail=0
[ $rc -eq 0 ] || { echo "FAIL: qsync-step exited $rc" >&2; fail=1; }
grep -Eq "^qsync-linux: booted uptime=[0-9.]+ cpus=${smp}([^0-9]|$)" "$work/out" || { echo "FAIL: no boot marker with cpus=$smp" >&2; fail=1; }
grep -q '"exit_status": 0,' "$work/run.json" || { echo "FAIL: QEMU did not power off cleanly" >&2; fail=1; }
grep -q '"max_overshoot_insns": 0,' "$work/run.json" || { echo "FAIL: a stop overshot" >&2; fail=1; }
grep -q '^| 100 | 100.00 | 100 | 100 | 100 | [0-9]* | / |$' "$work/err" ||
    { echo "FAIL: the period table shows stops off the quantum" >&2; fail=1; }
if [ $fail -ne 0 ]; then
    echo "--- stdout" >&2; tail -20 "$work/out" >&2
    echo "--- stderr" >&2; tail -20 "$work/err" >&2
    exit 1
fi
grep '^qsync-linux:' "$work/out"
grep -E '"(quanta|virtual_ns|wall_s|engine)"' "$work/run.json"
