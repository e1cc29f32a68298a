#!/usr/bin/env bash
# The determinism report, in the spirit of the usual period table: boots the
# Linux demo guest in lockstep at -smp 1, 2 and 4, several times each, and
# compares the instruction totals and virtual times across runs. The RTC
# starts at a fixed date and follows the virtual clock: started from the
# host's date, the boot differs from run to run (by up to 1 ms at the
# marker on x86_64).
# usage: scripts/determinism.sh [BUILD_DIR [RUNS [QUANTUM]]]
#        (defaults: build, 3, 100us)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
runs=${2:-3}
quantum=${3:-100us}
step=$build/bin/qsync-step
linux=$build/guests/linux-amd64
[ -x "$step" ] && [ -s "$linux/vmlinuz" ] || {
    echo "determinism: build first (scripts/demo.sh or scripts/test.sh)" >&2
    exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

json_get() { sed -n "s/^  \"$2\": \(.*\)$/\1/p" "$1" | sed 's/,$//'; }

echo "Linux boot in lockstep at $quantum, $runs runs per row (engine: auto)"
echo "| SMP | instructions at the last stop | virtual ns at the last stop | guest uptime | quanta | stop logs identical | exit totals |"
echo "|---|---|---|---|---|---|---|"
for smp in 1 2 4; do
    for r in $(seq 1 "$runs"); do
        "$step" --quiet --quantum "$quantum" --json "$work/$smp.$r.json" --csv "$work/$smp.$r.csv" -- \
            qemu-system-x86_64 -M pc -m 256 -smp "$smp" -nodefaults -display none -serial stdio \
            -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm \
            -kernel "$linux/vmlinuz" -initrd "$linux/initramfs.cpio.gz" \
            -append "console=ttyS0 quiet panic=-1" >"$work/$smp.$r.out" 2>"$work/$smp.$r.err" || {
            echo "determinism: -smp $smp run $r failed: $(tail -3 "$work/$smp.$r.err")" >&2
            exit 1
        }
        cut -d, -f1-5 "$work/$smp.$r.csv" >"$work/$smp.$r.stops"
    done
    # Every stop is compared (seq, deadline, virtual ns, instructions, idle).
    # The total at QEMU's exit is reported apart: the guest's power-off is
    # a shutdown request that QEMU serves a moment later, a few
    # instructions more or less from run to run.
    same=yes
    totals=$(json_get "$work/$smp.1.json" instructions)
    for r in $(seq 2 "$runs"); do
        cmp -s "$work/$smp.1.stops" "$work/$smp.$r.stops" || same=no
        totals="$totals / $(json_get "$work/$smp.$r.json" instructions)"
    done
    last=$(tail -n 1 "$work/$smp.1.stops")
    uptime=$(sed -n 's/^qsync-linux: booted uptime=\([0-9.]*\).*/\1/p' "$work/$smp.1.out" | tr -d '\r')
    echo "| $smp | $(echo "$last" | cut -d, -f4) | $(echo "$last" | cut -d, -f3) |" \
        "${uptime:-?} s | $(json_get "$work/$smp.1.json" quanta) | $same | $totals |"
done
