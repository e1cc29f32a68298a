#!/bin/sh
# The init's kernel command line options, on aarch64 in lockstep: bad
# input gets a message naming what was wrong and a power-off, and
# qsync.run is split as the kernel splits the command line.
#   1. qsync.ip with no NIC on the PCI bus;
#   2. qsync.ip without a prefix length;
#   3. qsync.run given twice (the last counts) without qsync.ip: it runs
#      with lo up, keeps the spaces inside its quotes, and its exit status
#      is reported.
# Each guest must power off by itself (QEMU's exit status 0) before
# --until ends it.
# usage: net_cmdline_test.sh QSYNC_STEP GUEST_DIR
set -u
step=$1
dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

# NAME APPEND [QEMU_ARGS...]: boots one guest, its console in $work/NAME.
boot() {
    name=$1
    append=$2
    shift 2
    "$step" --quantum 100us --until 30s --json "$work/$name.json" -- qemu-system-aarch64 \
        -M virt,dtb-randomness=off -cpu cortex-a57 -m 256 -nodefaults -display none \
        -serial stdio -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm "$@" \
        -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" \
        -append "console=ttyAMA0 quiet panic=-1 $append" 2>"$work/$name.err" |
        tr -d '\r' >"$work/$name"
    grep -q '"exit_status": 0,' "$work/$name.json" ||
        { echo "FAIL: $name: the guest did not power off by itself" >&2; fail=1; }
}
# NAME PATTERN WHAT: the console of NAME has a line matching PATTERN.
expect() {
    grep -qE "$2" "$work/$1" || { echo "FAIL: $1: $3 (no line matches '$2')" >&2; fail=1; }
}

boot nonic 'qsync.ip=10.0.0.1/24'
expect nonic '^qsync-linux: qsync\.ip: no e1000 or virtio-net NIC on the PCI bus$' "no NIC, not said"

boot noprefix 'qsync.ip=10.0.0.1' -netdev hubport,id=n0,hubid=0 -device e1000,netdev=n0
expect noprefix '^qsync-linux: qsync\.ip=10\.0\.0\.1 is not ADDR/PREFIX$' "a missing prefix, not said"

boot run 'qsync.run="echo ignored" qsync.run="echo '"'"'two  spaces'"'"' && ping -c 1 127.0.0.1 && exit 3"'
expect run '^two  spaces$' "the spaces inside the quotes were not kept"
expect run '^1 packets transmitted, 1 packets received, 0% packet loss$' "lo did not answer"
expect run '^qsync-linux: run exit=3$' "the command's exit status was not reported"
if grep -q ignored "$work/run"; then
    echo "FAIL: run: the first qsync.run ran, not the last" >&2
    fail=1
fi
if grep -q 'net up' "$work/run"; then
    echo "FAIL: run: the network came up without qsync.ip" >&2
    fail=1
fi

if [ $fail -ne 0 ]; then
    for f in nonic noprefix run; do
        echo "--- $f" >&2
        tail -8 "$work/$f" >&2
        tail -3 "$work/$f.err" >&2
    done
    exit 1
fi
grep -h '^qsync-linux: [qr]' "$work/nonic" "$work/noprefix" "$work/run"
