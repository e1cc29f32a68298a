#!/bin/sh
# qsync-ns3 end to end: the aarch64 demo guest (e1000, 10.0.0.1) and an
# ns-3 node (10.0.0.2) on one ns-3 CSMA channel. ns-3's V4Ping pings the
# guest 3 times and the guest runs `ping -c 3 10.0.0.2`. RUNS runs (1 or 2)
# at the given quantum; checks every reply on both sides, that every RTT is
# at least twice the channel's delay plus twice the serialization of an
# echo frame, and, with 2 runs, that both printed exactly the same.
# usage: ping_test.sh QSYNC_NS3 GUEST_DIR QUANTUM DELAY_US RATE_MBPS RUNS
set -u
ns3=$1
dir=$2
delay_us=$3
rate_mbps=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# An echo request or reply on the wire: 14 (Ethernet) + 84 (IPv4 + ICMP
# with 56 bytes of data) + 4 (FCS) = 102 bytes.
ser_ns=$((102 * 8 * 1000 / rate_mbps))
floor_ns=$((2 * delay_us * 1000 + 2 * ser_ns))

fail=0
r=0
for quantum in "$@"; do
    r=$((r + 1))
    "$ns3" --quantum "$quantum" --delay "${delay_us}us" --rate "${rate_mbps}Mbps" --pings 3 \
        --json "$work/run$r.json" -- \
        qemu-system-aarch64 -M virt,dtb-randomness=off -cpu cortex-a57 -m 256 \
        -nodefaults -display none -serial stdio -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm \
        -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" \
        -append 'console=ttyAMA0 quiet panic=-1 qsync.ip=10.0.0.1/24 qsync.run="ping -c 3 10.0.0.2"' \
        >"$work/out$r" 2>"$work/err$r"
    rc=$?
    tr -d '\r' <"$work/out$r" >"$work/log$r"
    log=$work/log$r
    [ $rc -eq 0 ] || { echo "FAIL: run $r: qsync-ns3 exited $rc" >&2; fail=1; }
    n=$(grep -c '^ns-3 ping: seq=[0-9]* rtt_ns=[0-9]*$' "$log")
    [ "$n" -eq 3 ] || { echo "FAIL: run $r: ns-3's ping got $n replies, not 3" >&2; fail=1; }
    grep -q "3 packets transmitted, 3 packets received, 0% packet loss" "$log" ||
        { echo "FAIL: run $r: the guest's ping did not get 3 replies" >&2; fail=1; }
    grep -q "qsync-linux: run exit=0$" "$log" || { echo "FAIL: run $r: the guest's run failed" >&2; fail=1; }
    grep -q '"guest_exit_status": 0,' "$work/run$r.json" ||
        { echo "FAIL: run $r: the guest did not power off cleanly" >&2; fail=1; }
    grep -q '"ns3_rtt_ns": \[[0-9]*, [0-9]*, [0-9]*\]' "$work/run$r.json" ||
        { echo "FAIL: run $r: the JSON does not have 3 RTTs" >&2; fail=1; }
    # Every RTT, ns-3's (ns) and the guest's (ms with 3 decimals), is at
    # least the floor.
    for rtt in $(sed -n 's/^ns-3 ping: seq=[0-9]* rtt_ns=\([0-9]*\)$/\1/p' "$log"); do
        [ "$rtt" -ge $floor_ns ] || { echo "FAIL: run $r: ns-3 RTT $rtt ns < $floor_ns ns" >&2; fail=1; }
    done
    for ms in $(sed -n 's/^64 bytes from 10.0.0.2: seq=[0-9]* ttl=64 time=\([0-9.]*\) ms$/\1/p' "$log"); do
        us=$(echo "$ms" | awk '{ printf "%d", $1 * 1000 + 0.5 }')
        [ $((us * 1000)) -ge $((floor_ns / 1000 * 1000)) ] ||
            { echo "FAIL: run $r: guest RTT $ms ms < $floor_ns ns" >&2; fail=1; }
    done
done
k=2
while [ $k -le $r ]; do
    q1=$1
    qk=$(eval echo "\${$k}")
    if [ "$q1" = "$qk" ]; then a=$work/log1; b=$work/log$k; else
        grep -v '^qsync-ns3: ' "$work/log1" >"$work/cut1"; grep -v '^qsync-ns3: ' "$work/log$k" >"$work/cut$k"
        a=$work/cut1; b=$work/cut$k
    fi
    if ! cmp -s "$a" "$b"; then
        echo "FAIL: the runs at $q1 and $qk printed different output:" >&2
        diff "$a" "$b" >&2
        fail=1
    fi
    k=$((k + 1))
done
if [ $fail -ne 0 ]; then
    echo "--- stdout (run 1)" >&2; tail -30 "$work/log1" >&2
    echo "--- stderr (run 1)" >&2; tail -20 "$work/err1" >&2
    exit 1
fi
grep -E '^(ns-3 ping|64 bytes|qsync-ns3)' "$work/log1"
echo "floor: $floor_ns ns"
