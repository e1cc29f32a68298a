#!/bin/sh
# qsync-net's contract on real QEMU with the project's bare-metal guest:
# usage errors, the guests' lines by quantum in guest order, the exit
# status of the first guest that failed while the others carry on, SIGINT
# mid-run (which still writes the pcap and the JSON and leaves no QEMU
# behind), and frames through the switch with the guest's e1000 driver.
# usage: qsync_net_test.sh QSYNC_NET GUEST_ELF
set -u
net=$1
guest=$2
qemu=${QSYNC_TEST_QEMU:-qemu-system-x86_64}
work=$(mktemp -d)
bg=""
trap '[ -n "$bg" ] && kill $bg 2>/dev/null; rm -rf "$work"' EXIT
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
# json_get FILE KEY: a top-level key of the JSON summary.
json_get() {
    sed -n "s/^  \"$2\": \(.*\)$/\1/p" "$1" | sed 's/,$//'
}
g="$qemu -M pc -nodefaults -display none -serial stdio -no-reboot
 -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel $guest"
has_pcap=0
"$net" --version | grep -q 'libpcap' && has_pcap=1

# 1. Usage errors exit 2 before any QEMU starts, naming what is wrong.
check_usage() {
    expect=$1
    shift
    "$net" "$@" >"$work/u.out" 2>"$work/u.err"
    rc=$?
    [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2"
    grep -q -- "$expect" "$work/u.err" || fail "'$*': stderr lacks '$expect': $(cat "$work/u.err")"
}
check_usage "--quantum 200us is longer than --latency 100us: the latency is the lookahead" \
    --quantum 200us -- $g -- $g
check_usage "--quantum 2ms is longer than --latency 1ms" --latency 1ms --quantum 2ms -- $g -- $g
check_usage "--nic 'rtl8139': expected e1000 or virtio" --nic rtl8139 -- $g -- $g
check_usage "no guests given" --latency 1ms
check_usage "one guest given: a network needs at least two" -- $g
check_usage "guest 2's QEMU command is empty" -- $g --
check_usage "guest 2's QEMU command is empty" -- $g -- -- $g
check_usage "'$qemu': give each guest's QEMU command after a '--'" $g
check_usage "--latency '0us': must be positive" --latency 0us -- $g -- $g
check_usage "--until 'soon'" --until soon -- $g -- $g
check_usage "--json '/nonexistent/x.json'" --until 1ms --json /nonexistent/x.json -- $g -- $g
[ $has_pcap -eq 1 ] && check_usage "--pcap '/nonexistent/x.pcap'" --pcap /nonexistent/x.pcap -- $g -- $g
check_usage "\[2\] cannot start '/nonexistent/qemu'" -- $g -- /nonexistent/qemu
ls "$work" | grep -q json && fail "a usage error wrote a JSON file"

# 2. Lines by quantum: guest 1's lines of a quantum, then guest 2's, each
#    after "[N] " (and the virtual time with --timestamps). Guest 1 ends
#    early with QEMU status 1 (isa-debug-exit's success); guest 2, a longer
#    computation, carries on to its end. (That two runs print the same
#    bytes is checked on Linux guests that talk, linux.net.qsync-net.)
"$net" --timestamps --json "$work/t1.json" -- $g -append "time count=5 delay=3000" \
    -- $g -append "compute 20000000" >"$work/t1.out" 2>"$work/t1.err"
rc=$?
[ $rc -eq 1 ] || fail "two guests exited $rc, expected their status 1: $(cat "$work/t1.err")"
grep -c '^\[1\] \[ *[0-9]*\.[0-9]\{9\}\] qsync-guest: time [0-9] hpet_ns=' "$work/t1.out" | grep -qx 5 ||
    fail "guest 1's five time lines are missing: $(head -20 "$work/t1.out")"
grep -q '^\[2\] \[ *[0-9]*\.[0-9]\{9\}\] qsync-guest: compute done loops=20000000 ' "$work/t1.out" ||
    fail "guest 2 did not carry on to its end after guest 1 exited"
awk '{
        if (!match($0, /^\[[12]\] \[ *[0-9]+\.[0-9]+\] /)) { print "not [N] [time]: " $0; bad = 1; next }
        n = substr($0, 2, 1); ts = $2 $3; gsub(/[][ ]/, "", ts)
        if (ts < pts || (ts == pts && n < pn)) { print "out of order: " $0; bad = 1 }
        pts = ts; pn = n
    } END { exit bad }' "$work/t1.out" >"$work/order" || fail "lines not by quantum, then guest: $(cat "$work/order")"
[ "$(json_get "$work/t1.json" frames)" = 0 ] || fail "frames from guests without a NIC driver"
grep -c '^    {"exit_status": 1, "term_signal": null, "instructions": [1-9][0-9]*, "frames_sent": 0, "frames_received": 0' \
    "$work/t1.json" | grep -qx 2 || fail "guests' JSON: $(cat "$work/t1.json")"
[ "$(json_get "$work/t1.json" max_overshoot_insns)" = 0 ] || fail "a stop overshot"
[ "$(json_get "$work/t1.json" latency_ns)" = 100000 ] || fail "the default latency is not 100us"
[ "$(json_get "$work/t1.json" quantum_ns)" = 100000 ] || fail "the default quantum is not the latency"

# 3. The exit status is the first failing guest's: guest 2's unknown mode
#    ends it (QEMU status 5) in an earlier quantum than guest 1's success
#    (status 1). Without --timestamps lines are "[N] line".
"$net" --quantum 50us -- $g -append "compute 3000000" -- $g -append "nosuchmode" \
    >"$work/f.out" 2>"$work/f.err"
rc=$?
[ $rc -eq 5 ] || fail "guest 2's early failure: exited $rc, expected 5: $(cat "$work/f.err")"
grep -q "^\[2\] qsync-guest: unknown mode 'nosuchmode'" "$work/f.out" || fail "no [2] line: $(cat "$work/f.out")"
grep -q "^\[1\] qsync-guest: compute done" "$work/f.out" || fail "guest 1 did not carry on"

# 4. --json - puts the summary alone on stdout; the lines go to stderr.
"$net" --until 8ms --json - -- $g -append "compute 100000000" -- $g -append "compute 100000000" \
    >"$work/j.out" 2>"$work/j.err"
rc=$?
[ $rc -eq 0 ] || fail "--until 8ms exited $rc, expected 0: $(cat "$work/j.err")"
[ "$(head -c 1 "$work/j.out")" = "{" ] && [ "$(tail -n 1 "$work/j.out")" = "}" ] ||
    fail "--json -: stdout is not the JSON alone: $(head -3 "$work/j.out")"
[ "$(json_get "$work/j.out" virtual_ns)" = 8000000 ] || fail "--until 8ms: virtual_ns $(json_get "$work/j.out" virtual_ns)"
[ "$(json_get "$work/j.out" quanta)" = 80 ] || fail "--until 8ms: quanta $(json_get "$work/j.out" quanta)"
grep -q '^\[1\] qsync-guest: compute start' "$work/j.err" || fail "--json -: no guest line on stderr"
grep -c '"exit_status": null' "$work/j.out" | grep -qx 2 || fail "--until: guests ended by us have a status"

# 5. SIGINT mid-run: every QEMU ends, the pcap and the JSON are written,
#    the exit status is 130.
"$net" --pcap "$work/s.pcap" --json "$work/s.json" -- $g -append "compute 4000000000" \
    -- $g -append "compute 4000000000" >"$work/s.out" 2>"$work/s.err" &
bg=$!
i=0
while ! grep -q '^\[2\] qsync-guest: compute start' "$work/s.out" 2>/dev/null && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
qemus=$(pgrep -P $bg | tr '\n' ' ')
[ "$(echo $qemus | wc -w)" = 2 ] || fail "SIGINT: expected two QEMUs under qsync-net, found '$qemus'"
kill -INT $bg
i=0
while kill -0 $bg 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 $bg 2>/dev/null; then
    fail "SIGINT: qsync-net still runs 10 s later"
    kill -9 $bg
fi
wait $bg
rc=$?
bg=""
[ $rc -eq 130 ] || fail "SIGINT: exited $rc, expected 130: $(cat "$work/s.err")"
sleep 1 # liveness bound: QEMU gone within 1 s of its controller
for p in $qemus; do
    if kill -0 "$p" 2>/dev/null; then
        fail "SIGINT: QEMU $p outlived qsync-net"
        kill -9 "$p"
    fi
done
grep -q 'Interrupt, ending the guests' "$work/s.err" || fail "SIGINT: no message: $(cat "$work/s.err")"
[ "$(tail -n 1 "$work/s.json" 2>/dev/null)" = "}" ] || fail "SIGINT: no JSON written"
v=$(json_get "$work/s.json" virtual_ns)
[ "${v:-0}" -gt 0 ] || fail "SIGINT: JSON virtual_ns '$v'"
if [ $has_pcap -eq 1 ]; then
    # A pcap with its file header and no frames: nanosecond magic
    # a1b23c4d (little-endian on disk), link type 1 (Ethernet).
    [ "$(od -A n -t x1 -N 4 "$work/s.pcap" | tr -d ' ')" = 4d3cb2a1 ] ||
        fail "SIGINT: the pcap is not a nanosecond pcap: $(od -A x -t x1 -N 24 "$work/s.pcap")"
    [ "$(od -A n -t u4 -j 20 -N 4 "$work/s.pcap" | tr -d ' ')" = 1 ] || fail "SIGINT: the pcap's link type is not Ethernet"
    if command -v tcpdump >/dev/null 2>&1; then
        tcpdump -r "$work/s.pcap" >/dev/null 2>"$work/td.err" || fail "SIGINT: tcpdump cannot read the pcap: $(cat "$work/td.err")"
    fi
else
    echo "SKIP: the pcap checks: this qsync-net was built without libpcap"
fi

# 6. Frames, with the guest's polled e1000 driver (README of tests/guest),
#    on a 300 us segment at 100 us quanta: guest 1 broadcasts 4 frames
#    400 ms apart and exits; guests 2 and 3 echo each back to its sender.
#    They turn their receivers on at about 1.05 s (QEMU's receive hold), so
#    frames 1 and 2 wait in the queue, and 3 and 4 arrive exactly 300 us
#    after their send time (the guest sees them within its poll loop's few
#    instructions). The echoes go to guest 1 only (the switch learned its
#    MAC); those of frame 4 find guest 1 gone: dropped and counted. The two
#    echoes of a frame leave at the same virtual time: the pcap has guest
#    2's first, whichever came first. Twice: the same stdout and pcap.
for run in 1 2; do
    "$net" --latency 300us --quantum 100us --timestamps --pcap "$work/e$run.pcap" \
        --json "$work/e$run.json" -- $g -append "transmit count=4 gap=400000000" \
        -- $g -append "echo count=4" -- $g -append "echo count=4" \
        >"$work/e$run.out" 2>"$work/e$run.err"
    rc=$?
    [ $rc -eq 1 ] || fail "frames run $run exited $rc, expected the guests' 1: $(cat "$work/e$run.err")"
done
# The same at -smp 2 (the guests' second CPUs stay halted, but QEMU runs
# two vCPUs in turn): two more runs, identical to each other.
for run in 3 4; do
    "$net" --latency 300us --quantum 100us --timestamps --pcap "$work/e$run.pcap" \
        --json "$work/e$run.json" -- $g -smp 2 -append "transmit count=4 gap=400000000" \
        -- $g -smp 2 -append "echo count=4" -- $g -smp 2 -append "echo count=4" \
        >"$work/e$run.out" 2>"$work/e$run.err"
    rc=$?
    [ $rc -eq 1 ] || fail "frames run $run (-smp 2) exited $rc, expected the guests' 1: $(cat "$work/e$run.err")"
done
for pair in "1 2" "3 4"; do
    set -- $pair
    cmp -s "$work/e$1.out" "$work/e$2.out" ||
        fail "frames: runs $1 and $2 printed different lines: $(diff "$work/e$1.out" "$work/e$2.out" | head -6)"
    if [ $has_pcap -eq 1 ]; then
        cmp -s "$work/e$1.pcap" "$work/e$2.pcap" || fail "frames: runs $1 and $2 wrote different pcaps"
    fi
done
grep -c ' tx ' "$work/e3.out" | grep -qx 4 || fail "frames at -smp 2: guest 1 did not send 4 frames: $(head -5 "$work/e3.out")"
sed 's/^\[\([123]\)\] \[ *[0-9.]*\] qsync-guest: /\1 /' "$work/e1.out" >"$work/e.lines"
awk -v lat=300000 '
    $1 == 1 && $2 == "tx" { sub(/^t=/, "", $5); tx[$3] = $5 }
    $1 >= 2 && $2 == "echo" && $3 ~ /^[0-9]+$/ {
        sub(/^num=/, "", $6); sub(/^rx=/, "", $9); rx[$1, $6] = $9; nums[$1] = nums[$1] $6 " " }
    END {
        for (k = 1; k <= 4; k++) for (d = 2; d <= 3; d++) {
            if (!((d, k) in rx)) { print "guest " d " did not get frame " k; bad = 1; continue }
            late = rx[d, k] - tx[k] - lat
            if (late < 0) { print "guest " d " got frame " k " " (-late) " ns before its latency"; bad = 1 }
            if (k >= 3 && late > 100) { print "guest " d " got frame " k " " late " ns after its latency"; bad = 1 }
        }
        for (d = 2; d <= 3; d++)
            if (nums[d] != "1 2 3 4 ") { print "guest " d " got frames " nums[d] "(the other echo flooded to it?)"; bad = 1 }
        exit bad
    }' "$work/e.lines" >"$work/e.check" || fail "frames: $(cat "$work/e.check")"
[ "$(json_get "$work/e1.json" frames)" = 12 ] || fail "frames: $(json_get "$work/e1.json" frames) frames entered the segment, expected 12"
[ "$(json_get "$work/e1.json" frames_dropped)" = 2 ] || fail "frames: frames_dropped $(json_get "$work/e1.json" frames_dropped), expected 2 (the echoes for the guest that had exited)"
grep -q '^    {.*"frames_sent": 4, "frames_received": 6, "frames_dropped": 2, "mac": "52:54:00:00:00:01"}' "$work/e1.json" ||
    fail "frames: guest 1's counts: $(cat "$work/e1.json")"
grep -q '^    {.*"frames_sent": 4, "frames_received": 4, "frames_dropped": 0, "mac": "52:54:00:00:00:03"}' "$work/e1.json" ||
    fail "frames: guest 3's counts: $(cat "$work/e1.json")"
if [ $has_pcap -eq 1 ] && command -v tcpdump >/dev/null 2>&1; then
    tcpdump -r "$work/e1.pcap" -n -tt -e --time-stamp-precision=nano 2>/dev/null >"$work/e.td"
    [ "$(grep -c 'ethertype Unknown (0x88b5), length 60' "$work/e.td")" = 12 ] || fail "frames: the pcap: $(cat "$work/e.td")"
    # In canonical order: by time, then by sender.
    awk '!/^[0-9]/ { next } $1 < pt || ($1 == pt && $2 < ps) { print "out of order: " $0; bad = 1 } { pt = $1; ps = $2 }
         END { exit bad }' "$work/e.td" >"$work/e.order" || fail "frames: pcap $(cat "$work/e.order")"
    # Each broadcast at its virtual send time: the guest's clock just before
    # its TDT write, plus that one instruction.
    for k in 1 2 3 4; do
        t=$(awk -v k=$k '$1 == 1 && $2 == "tx" && $3 == k { sub(/^t=/, "", $5); print $5 + 1 }' "$work/e.lines")
        ts=$(printf '%d.%09d' $((t / 1000000000)) $((t % 1000000000)))
        grep -q "^$ts 52:54:00:00:00:01 > ff:ff:ff:ff:ff:ff" "$work/e.td" || fail "frames: broadcast $k is not at $ts in the pcap"
    done
fi

# 7. A guest that never turns its receiver on (the compute guest has no
#    driver running) while frames for it are lost: a warning naming the
#    guest and the model, not with --quiet; the frames count as dropped.
"$net" --json "$work/w.json" -- $g -append "transmit count=5 gap=100000" \
    -- $g -append "compute 20000000" >"$work/w.out" 2>"$work/w.err"
grep -q '^\[2\] qsync-guest: compute done' "$work/w.out" || fail "the driverless guest did not run to its end"
grep -q '^\[2\] warning: 5 frames dropped: the guest never turned its e1000 receiver on (no driver for it?)$' "$work/w.err" ||
    fail "no warning for the guest without a driver: $(cat "$work/w.err")"
grep -q '^\[1\] warning' "$work/w.err" && fail "a warning for guest 1, which got no frames"
grep -q 'QSYNC_ENODRIVER' "$work/w.err" && fail "the library's no-driver notice was taken for an error: $(cat "$work/w.err")"
[ "$(json_get "$work/w.json" frames_dropped)" = 5 ] || fail "frames for a driverless guest not counted as dropped: $(cat "$work/w.json")"
"$net" --quiet -- $g -append "transmit count=5 gap=100000" -- $g -append "compute 20000000" \
    >/dev/null 2>"$work/wq.err"
grep -q warning "$work/wq.err" && fail "--quiet printed a warning: $(cat "$work/wq.err")"

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "qsync-net: all checks passed"
