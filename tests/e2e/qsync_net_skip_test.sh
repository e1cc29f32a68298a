#!/usr/bin/env bash
# e2e.qsync-net.skip: qsync-net --skip-idle prints the same lines (their
# --timestamps included) and writes the same pcap as the same run without
# it, in fewer barriers. Two test guests that idle between the PIT's ticks
# (1 ms and 0.7 ms periods), each tick a line with the guest's own HPET
# and TSC readings, so any change in what a guest saw, or when, shows.
# usage: qsync_net_skip_test.sh QSYNC_NET GUEST_ELF
set -euo pipefail
net=$1 elf=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
guest=(qemu-system-x86_64 -M pc -nodefaults -display none -serial stdio
       -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$elf")
pcap=()
"$net" --version | grep -q libpcap && pcap=(--pcap)
run() { # TAG FLAGS...
    local tag=$1 status=0
    shift
    "$net" "$@" --latency 100us --quantum 50us --timestamps --json "$work/$tag.json" \
        ${pcap:+--pcap "$work/$tag.pcap"} \
        -- "${guest[@]}" -append "idle ticks=20 period_us=1000" \
        -- "${guest[@]}" -append "idle ticks=25 period_us=700" >"$work/$tag.out" 2>"$work/$tag.err" ||
        status=$?
    # The test guest's success is QEMU's status 1, which qsync-net passes on.
    [ "$status" = 1 ] || { echo "FAIL: $tag: qsync-net exited $status" >&2; cat "$work/$tag.err" >&2; exit 1; }
}
run every
run skip --skip-idle
fails=0
[ "$(grep -c ' tick ' "$work/every.out")" = 45 ] || { echo "FAIL: expected 45 tick lines" >&2; fails=1; }
cmp -s "$work/every.out" "$work/skip.out" ||
    { echo "FAIL: --skip-idle printed other lines:" >&2; diff "$work/every.out" "$work/skip.out" | head >&2; fails=1; }
if [ ${#pcap[@]} -gt 0 ]; then
    cmp -s "$work/every.pcap" "$work/skip.pcap" || { echo "FAIL: --skip-idle wrote another pcap" >&2; fails=1; }
fi
q_every=$(sed -n 's/^  "quanta": \([0-9]*\),$/\1/p' "$work/every.json")
q_skip=$(sed -n 's/^  "quanta": \([0-9]*\),$/\1/p' "$work/skip.json")
# The guests tick for 25 ms after a ~6 ms boot: 500 quanta of 50 us
# without skipping, and at most a few per tick (45 ticks) with it.
[ -n "$q_every" ] && [ -n "$q_skip" ] && [ "$q_skip" -lt $((q_every - 300)) ] ||
    { echo "FAIL: quanta: $q_every without --skip-idle, $q_skip with it" >&2; fails=1; }
[ $fails = 0 ] || { cat "$work/skip.err" >&2; exit 1; }
echo "ok: the same $(wc -l <"$work/every.out") lines${pcap:+ and pcap}; quanta $q_every -> $q_skip"
