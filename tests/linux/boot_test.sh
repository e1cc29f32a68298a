#!/bin/sh
# Boots the Linux demo guest in lockstep at a 100 us quantum through
# qsync-step and checks the marker, a clean power-off, exact stops, and
# that the guest's own clock agrees with the lockstep's virtual time: the
# marker carries clock_ns (the guest's clock, virtual ns since reset, read
# just before the line is written) and qsync-step --timestamps prefixes it
# with V, the virtual time of the stop that ended the quantum in which the
# line was completed. So clock_ns <= V (the guest never saw a time past
# the deadline) and V - clock_ns <= the quantum (the same quantum).
# usage: boot_test.sh QSYNC_STEP GUEST_DIR x86_64|aarch64 [SMP]
set -u
step=$1
dir=$2
arch=$3
smp=${4:-1}
quantum_ns=100000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same boot in every run, so that where the marker falls in its
# quantum is the same too: the RTC starts at a fixed date and follows the
# virtual clock (from the host's date, x86_64's marker moved by up to 1 ms
# between runs), and virt puts no fresh random seeds in aarch64's device
# tree (they moved its marker by up to 30 us).
case "$arch" in
    x86_64) set -- qemu-system-x86_64 -M pc -m 256 -append "console=ttyS0 quiet panic=-1" ;;
    aarch64) set -- qemu-system-aarch64 -M virt,dtb-randomness=off -cpu cortex-a57 -m 256 \
        -append "console=ttyAMA0 quiet panic=-1" ;;
    *) echo "boot_test: unknown arch $arch" >&2; exit 2 ;;
esac
"$step" --quantum 100us --timestamps --stats --json "$work/run.json" --csv "$work/run.csv" -- "$@" -smp "$smp" \
    -nodefaults -display none -serial stdio -no-reboot -rtc base=2020-01-01T00:00:00,clock=vm \
    -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" >"$work/out" 2>"$work/err"
rc=$?
fail=0
[ $rc -eq 0 ] || { echo "FAIL: qsync-step exited $rc" >&2; fail=1; }
marker=$(grep -E "^\[ *[0-9]+\.[0-9]{9}\] qsync-linux: booted uptime=[0-9.]+ cpus=${smp} clock_ns=[0-9]+" "$work/out" | head -n 1 | tr -d '\r')
if [ -z "$marker" ]; then
    echo "FAIL: no boot marker with cpus=$smp and clock_ns, after a timestamp" >&2
    fail=1
else
    # V in ns from "[    6.108200000] ": seconds and nanoseconds side by side.
    v=$(echo "$marker" | sed 's/^\[ *\([0-9]*\)\.\([0-9]*\)\].*/\1\2/' | sed 's/^0*\([0-9]\)/\1/')
    clock=$(echo "$marker" | sed 's/.* clock_ns=\([0-9]*\).*/\1/')
    after=$(sed -n 's/.*qsync-linux: written clock_ns=\([0-9]*\).*/\1/p' "$work/out" | head -n 1)
    # The marker's last byte left the guest at some t_w with
    # clock_ns <= t_w <= after (the guest's clock before and after its
    # write), and in the quantum that ended at V: V - quantum < t_w <= V.
    # Both hold only if the guest's clock and the virtual time agree to
    # within that quantum.
    if [ -z "$after" ]; then
        echo "FAIL: no 'written clock_ns=' line after the marker" >&2
        fail=1
    elif [ "$clock" -gt "$v" ]; then
        echo "FAIL: the guest's clock_ns=$clock before the write is past V=$v, the stop that ended the write's quantum" >&2
        fail=1
    elif [ "$after" -le $((v - quantum_ns)) ]; then
        echo "FAIL: the guest's clock after the write ($after) is not past V - quantum ($((v - quantum_ns))): the write ended in an earlier quantum by the guest's clock" >&2
        fail=1
    elif [ $((after - clock)) -ge $quantum_ns ]; then
        echo "FAIL: the write took $((after - clock)) ns by the guest's clock, not less than a quantum" >&2
        fail=1
    fi
fi
grep -q '"exit_status": 0,' "$work/run.json" || { echo "FAIL: QEMU did not power off cleanly" >&2; fail=1; }
# Exact stops, seen twice: no --csv record off its deadline, and the
# summary's maximum overshoot (which the block engine's test shows is
# computed, not a constant) says 0 too.
awk -F, 'NR > 1 && $3 != $2 { bad++ } END { exit bad > 0 }' "$work/run.csv" ||
    { echo "FAIL: a --csv record is off its deadline" >&2; fail=1; }
[ "$(wc -l <"$work/run.csv")" -gt 1000 ] || { echo "FAIL: --csv has too few records" >&2; fail=1; }
grep -q '"max_overshoot_insns": 0,' "$work/run.json" || { echo "FAIL: a stop overshot" >&2; fail=1; }
grep -q '^| 100 | 100.00 | 100 | 100 | 100 | [0-9]* | / |$' "$work/err" ||
    { echo "FAIL: the period table shows stops off the quantum" >&2; fail=1; }
if [ $fail -ne 0 ]; then
    echo "--- stdout" >&2; tail -20 "$work/out" >&2
    echo "--- stderr" >&2; tail -20 "$work/err" >&2
    exit 1
fi
echo "$marker"
echo "guest's clock around the write: $clock..$after ns; V = $v ns; quantum $quantum_ns ns"
grep -E '"(quanta|virtual_ns|wall_s|engine)"' "$work/run.json"
