#!/bin/sh
# Two x86_64 Linux demo guests ping each other through qsync-net: a 200 us
# segment at 10 us quanta, e1000 NICs. Guest 1 is 10.0.0.1, guest 2
# 10.0.0.2; each runs `ping -c 3 -A` to the other, stays up half a second
# to answer the other's pings, and powers off. Checks:
# - both pings got their three answers, and every round trip ping printed
#   is at least 2 x 200 us (0.400 ms): a frame never arrives before its
#   latency;
# - two runs (side by side), the second with --skip-idle, print the same
#   stdout, virtual times (--timestamps) included, and write byte-identical
#   pcaps; the second makes fewer barriers (the guests idle between and
#   after their pings);
# - tcpdump reads the pcap: nanosecond timestamps, the ICMP echo requests
#   and replies between 10.0.0.1 and 10.0.0.2, in time order, each reply
#   at least 200 us after its request;
# - the JSON: both guests exited with 0, frames counted, none dropped.
# usage: qsync_net_ping_test.sh QSYNC_NET GUEST_DIR
set -u
net=$1
dir=$2
work=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT
if ! "$net" --version | grep -q libpcap; then
    echo "SKIP: qsync-net was built without libpcap (install libpcap-dev), and this test reads its pcap"
    exit 77
fi
if ! command -v tcpdump >/dev/null 2>&1; then
    echo "SKIP: tcpdump is not installed (scripts/setup.sh installs it), and this test reads the pcap with it"
    exit 77
fi
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
guest() { # one guest's QEMU command, as words
    echo qemu-system-x86_64 -M pc -m 256 -nodefaults -display none -serial stdio -no-reboot \
        -rtc base=2020-01-01T00:00:00,clock=vm -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz"
}
app() { # IP PEER: the kernel command line
    echo "console=ttyS0 quiet panic=-1 qsync.ip=$1/24 qsync.run=\"ping -c 3 -A $2 && sleep 0.5\""
}
start=$(date +%s)
for run in 1 2; do
    skip=""
    [ $run = 2 ] && skip=--skip-idle
    "$net" $skip --latency 200us --quantum 10us --timestamps --pcap "$work/$run.pcap" --json "$work/$run.json" \
        -- $(guest) -append "$(app 10.0.0.1 10.0.0.2)" \
        -- $(guest) -append "$(app 10.0.0.2 10.0.0.1)" >"$work/$run.out" 2>"$work/$run.err" &
    pids="$pids $!"
done
for p in $pids; do
    wait $p
    echo $? >>"$work/rcs"
done
pids=""
[ "$(sort -u "$work/rcs")" = 0 ] || fail "qsync-net exited $(tr '\n' ' ' <"$work/rcs"), expected 0 twice"
# The checks read the lines without their times ("[N] [    8.5] line").
tr -d '\r' <"$work/1.out" | sed 's/^\(\[[12]\]\) \[ *[0-9]*\.[0-9]\{9\}\] /\1 /' >"$work/log"
grep -q '^\[[12]\] \[    8\.[0-9]\{9\}\] qsync-linux: net up' "$work/1.out" || fail "--timestamps: no time on the net up lines"
for n in 1 2; do
    peer=$((3 - n))
    grep -q "^\[$n\] qsync-linux: net up eth0 10\.0\.0\.$n/24$" "$work/log" || fail "guest $n's eth0 did not come up"
    grep -q "^\[$n\] 3 packets transmitted, 3 packets received, 0% packet loss$" "$work/log" ||
        fail "guest $n did not get three answers from 10.0.0.$peer"
    grep -q "^\[$n\] qsync-linux: run exit=0$" "$work/log" || fail "guest $n's ping did not end with 0"
done
# Every round trip is at least twice the latency.
rtts=$(sed -n 's/^\[[12]\] 64 bytes from 10\.0\.0\.[12]: seq=[0-9]* ttl=64 time=\([0-9.]*\) ms$/\1/p' "$work/log")
[ "$(echo $rtts | wc -w)" = 6 ] || fail "expected 6 round trips, found '$rtts'"
for t in $rtts; do
    awk -v t="$t" 'BEGIN { exit !(t >= 0.400) }' || fail "a round trip of $t ms, under 2 x 200 us"
done
cmp -s "$work/1.out" "$work/2.out" || fail "--skip-idle printed different output: $(diff "$work/1.out" "$work/2.out" | head -6)"
cmp -s "$work/1.pcap" "$work/2.pcap" || fail "--skip-idle wrote a different pcap"
q1=$(sed -n 's/^  "quanta": \([0-9]*\),$/\1/p' "$work/1.json")
q2=$(sed -n 's/^  "quanta": \([0-9]*\),$/\1/p' "$work/2.json")
# About 3 s of the 9 s are pings and sleep, nearly all of it idle.
[ -n "$q1" ] && [ -n "$q2" ] && [ "$q2" -lt $((q1 - 100000)) ] ||
    fail "--skip-idle made $q2 barriers, without it $q1"
# tcpdump: nanosecond times, the echoes both ways.
tcpdump -r "$work/1.pcap" -n -tt --time-stamp-precision=nano >"$work/td" 2>"$work/td.err" ||
    fail "tcpdump cannot read the pcap: $(cat "$work/td.err")"
grep -q 'link-type EN10MB (Ethernet)' "$work/td.err" || fail "the pcap is not Ethernet: $(cat "$work/td.err")"
awk '$1 < prev { bad = 1 } { prev = $1 } END { exit bad }' "$work/td" || fail "the pcap's frames are not in time order"
for pair in "1 2" "2 1"; do
    set -- $pair
    for kind in request reply; do
        c=$(grep -c "^[0-9]*\.[0-9]\{9\} IP 10\.0\.0\.$1 > 10\.0\.0\.$2: ICMP echo $kind" "$work/td")
        [ "$c" = 3 ] || fail "$c ICMP echo ${kind}s from 10.0.0.$1 to 10.0.0.$2 in the pcap, expected 3"
    done
done
# Each reply leaves at least 200 us after its request (the request's
# arrival). Both guests' pings may have the same ICMP id (the same boot,
# the same pid): a request is known by its sender, id and sequence, and
# its reply goes back to that sender.
awk '/ICMP echo request/ { match($0, /id [0-9]+, seq [0-9]+/); req[$3 " " substr($0, RSTART, RLENGTH)] = $1 }
     /ICMP echo reply/ { match($0, /id [0-9]+, seq [0-9]+/); to = $5; sub(/:$/, "", to)
         k = to " " substr($0, RSTART, RLENGTH)
         if (!(k in req)) { print "a reply without its request: " $0; bad = 1 }
         else if ($1 - req[k] < 0.000200) { print "a reply " ($1 - req[k]) " s after its request: " $0; bad = 1 }
         n++ }
     END { if (n != 6) { print n " replies"; bad = 1 } exit bad }' "$work/td" >"$work/td.check" ||
    fail "$(cat "$work/td.check")"
grep -q '^  "frames_dropped": 0,$' "$work/1.json" || fail "frames were dropped: $(cat "$work/1.json")"
grep -q '^  "max_overshoot_insns": 0,$' "$work/1.json" || fail "a stop overshot"
grep -c '^    {"exit_status": 0, ' "$work/1.json" | grep -qx 2 || fail "the guests did not both exit with 0"
if [ $fails -ne 0 ]; then
    echo "--- stdout" >&2; tail -30 "$work/log" >&2
    echo "--- stderr" >&2; tail -20 "$work/1.err" >&2
    echo "--- pcap" >&2; head -30 "$work/td" >&2
    exit 1
fi
grep -E 'net up|bytes from|packets|run exit' "$work/log"
grep 'ICMP' "$work/td"
grep -E '"(quanta|virtual_ns|frames|wall_s)"' "$work/1.json"
echo "with --skip-idle: $q2 barriers, $(sed -n 's/^  "wall_s": \(.*\),$/\1/p' "$work/2.json") s"
echo "qsync-net ping: $(($(date +%s) - start)) s for two runs side by side"
