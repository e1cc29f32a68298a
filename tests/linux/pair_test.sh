#!/bin/sh
# Two aarch64 demo guests, free-running (no lockstep), ping each other over
# QEMU's -netdev dgram on two unix-domain datagram sockets in a temporary
# directory: no IP network on the host at all. Guest A (virtio-net,
# 10.0.0.1) stays up; guest B (e1000, 10.0.0.2) pings A three times and
# powers off. Proves that two guests' stacks talk, and that a guest with
# qsync.ip and no qsync.run answers pings.
# usage: pair_test.sh GUEST_DIR [QEMU_BINARY]
set -u
dir=$1
qemu=${2:-qemu-system-aarch64}
work=$(mktemp -d)
apid=""
bpid=""
cleanup() {
    for p in $apid $bpid; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# GUEST SOCKET PEER_SOCKET DEVICE APPEND: starts one guest in the background.
guest() {
    "$qemu" -M virt,dtb-randomness=off -cpu cortex-a57 -m 256 -nodefaults -display none \
        -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm -serial "file:$work/$1.out" \
        -netdev "dgram,id=n0,local.type=unix,local.path=$work/$1.sock,remote.type=unix,remote.path=$work/$2.sock" \
        -device "$3,netdev=n0" -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" \
        -append "console=ttyAMA0 quiet panic=-1 $4" </dev/null >"$work/$1.err" 2>&1 &
}
# FILE PATTERN SECONDS: waits until FILE has a line matching PATTERN.
wait_for() {
    i=0
    while ! grep -qE "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le $(($3 * 10)) ] || return 1
        sleep 0.1
    done
}
fail=0
start=$(date +%s)
guest a b virtio-net-pci,mac=52:54:00:00:00:01 "qsync.ip=10.0.0.1/24"
apid=$!
if ! wait_for "$work/a.out" "qsync-linux: staying up" 60; then
    echo "FAIL: guest A did not bring its network up within 60 s" >&2
    fail=1
else
    guest b a e1000,mac=52:54:00:00:00:02 'qsync.ip=10.0.0.2/24 qsync.run="ping -c 3 10.0.0.1"'
    bpid=$!
    # B powers off by itself once its ping has ended: QEMU exits with 0.
    i=0
    while kill -0 "$bpid" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 600 ] || break
        sleep 0.1
    done
    if kill -0 "$bpid" 2>/dev/null; then
        echo "FAIL: guest B still runs 60 s after its start" >&2
        fail=1
    else
        wait "$bpid"
        rc=$?
        bpid=""
        [ $rc -eq 0 ] || { echo "FAIL: guest B's QEMU exited $rc" >&2; fail=1; }
    fi
    tr -d '\r' <"$work/b.out" >"$work/b.log"
    grep -qE '^qsync-linux: net up eth0 10\.0\.0\.2/24$' "$work/b.log" ||
        { echo "FAIL: guest B did not bring eth0 up" >&2; fail=1; }
    grep -qE '^64 bytes from 10\.0\.0\.1: seq=0 ' "$work/b.log" ||
        { echo "FAIL: A did not answer B's first ping" >&2; fail=1; }
    grep -q '^3 packets transmitted, 3 packets received, 0% packet loss$' "$work/b.log" ||
        { echo "FAIL: B did not get all three answers from A" >&2; fail=1; }
    grep -q '^qsync-linux: run exit=0$' "$work/b.log" ||
        { echo "FAIL: B's ping did not end with status 0" >&2; fail=1; }
fi
# A is still up, and ends at our signal.
if kill -0 "$apid" 2>/dev/null; then
    kill "$apid"
    wait "$apid"
    apid=""
else
    echo "FAIL: guest A did not stay up" >&2
    fail=1
fi
if [ $fail -ne 0 ]; then
    for g in a b; do
        echo "--- guest $g" >&2
        tail -20 "$work/$g.out" >&2
        cat "$work/$g.err" >&2
    done
    exit 1
fi
grep -E 'qsync-linux: net|bytes from|packets|round-trip|run exit' "$work/b.log"
echo "pair: $(($(date +%s) - start)) s"
