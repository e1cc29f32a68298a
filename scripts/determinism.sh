#!/usr/bin/env bash
# The determinism report, in the spirit of the usual period table: boots the
# Linux demo guest in lockstep at -smp 1, 2 and 4, several times each, and
# compares every stop and the totals at QEMU's exit across runs. The RTC
# starts at a fixed date and follows the virtual clock: started from the
# host's date, the boot differs from run to run (by up to 1 ms at the
# marker on x86_64).
# usage: scripts/determinism.sh [BUILD_DIR [RUNS [QUANTUM]]]
#        (defaults: build, 3, 100us)
# SMPS="1 4" picks the rows (default "1 2 4"); JOBS=2 boots two at a time
# (default 1), which also loads the host, as other work would. Exits 1
# when a stop log or an exit total differs between two runs of a row, 2
# when a boot fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
runs=${2:-3}
quantum=${3:-100us}
smps=${SMPS:-1 2 4}
jobs=${JOBS:-1}
step=$build/bin/qsync-step
linux=$build/guests/linux-amd64
[ -x "$step" ] && [ -s "$linux/vmlinuz" ] || {
    echo "determinism: build first (scripts/demo.sh or scripts/test.sh)" >&2
    exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

json_get() { sed -n "s/^  \"$2\": \(.*\)$/\1/p" "$1" | sed 's/,$//'; }

boot() { # smp run
    "$step" --quiet --quantum "$quantum" --json "$work/$1.$2.json" --csv "$work/$1.$2.csv" -- \
        qemu-system-x86_64 -M pc -m 256 -smp "$1" -nodefaults -display none -serial stdio \
        -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm \
        -kernel "$linux/vmlinuz" -initrd "$linux/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1" >"$work/$1.$2.out" 2>"$work/$1.$2.err" || {
        echo "determinism: -smp $1 run $2 failed: $(tail -3 "$work/$1.$2.err")" >&2
        return 2
    }
    # Every stop (seq, deadline, virtual ns, instructions, idle), then
    # the end: the exit's totals, which the plugin stamps at the
    # guest's power-off request.
    cut -d, -f1-5 "$work/$1.$2.csv" >"$work/$1.$2.stops"
    echo "$(json_get "$work/$1.$2.json" instructions) $(json_get "$work/$1.$2.json" virtual_ns)" \
        >"$work/$1.$2.totals"
}

echo "Linux boot in lockstep at $quantum, $runs runs per row, $jobs at a time (engine: auto)"
echo "| SMP | instructions at the last stop | virtual ns at the last stop | guest uptime | quanta | stop logs identical | exit: instructions | exit: virtual ns | exit totals identical |"
echo "|---|---|---|---|---|---|---|---|---|"
status=0
for smp in $smps; do
    r=1
    while [ "$r" -le "$runs" ]; do
        pids=()
        for j in $(seq 1 "$jobs"); do
            [ "$r" -le "$runs" ] || break
            boot "$smp" "$r" &
            pids+=($!)
            r=$((r + 1))
        done
        for p in "${pids[@]}"; do
            wait "$p" || { kill "${pids[@]}" 2>/dev/null; exit 2; }
        done
    done
    same=yes
    same_totals=yes
    for r in $(seq 2 "$runs"); do
        cmp -s "$work/$smp.1.stops" "$work/$smp.$r.stops" || same=no
        cmp -s "$work/$smp.1.totals" "$work/$smp.$r.totals" || same_totals=no
    done
    # Each distinct total once, with how many runs gave it.
    insns=$(cat "$work/$smp".*.totals | cut -d' ' -f1 | sort | uniq -c | awk '{printf "%s%s (%d)", (NR > 1 ? " / " : ""), $2, $1}')
    vns=$(cat "$work/$smp".*.totals | cut -d' ' -f2 | sort | uniq -c | awk '{printf "%s%s (%d)", (NR > 1 ? " / " : ""), $2, $1}')
    last=$(tail -n 1 "$work/$smp.1.stops")
    uptime=$(sed -n 's/^qsync-linux: booted uptime=\([0-9.]*\).*/\1/p' "$work/$smp.1.out" | tr -d '\r')
    echo "| $smp | $(echo "$last" | cut -d, -f4) | $(echo "$last" | cut -d, -f3) |" \
        "${uptime:-?} s | $(json_get "$work/$smp.1.json" quanta) | $same | $insns | $vns | $same_totals |"
    if [ "$same" != yes ] || [ "$same_totals" != yes ]; then
        status=1
        if [ "$same" != yes ]; then
            for r in $(seq 2 "$runs"); do
                cmp -s "$work/$smp.1.stops" "$work/$smp.$r.stops" ||
                    echo "determinism: -smp $smp run $r: $(diff "$work/$smp.1.stops" "$work/$smp.$r.stops" | head -4 | tr '\n' ' ')" >&2
            done
        fi
    fi
done
exit $status
