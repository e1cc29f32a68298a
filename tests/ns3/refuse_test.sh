#!/bin/sh
# A channel delay shorter than the quantum is refused, saying why: by
# qsync-ns3 before anything starts (exit 2), and by the library itself in
# an ns-3 script (the two-guest example), as an ns-3 fatal error, with no
# QEMU left behind. Then the guest's failures: QEMU that exits at start
# (a missing kernel) is reported with its status and its own message, and
# a qsync-ns3 that aborts mid-run leaves no QEMU behind.
# usage: refuse_test.sh QSYNC_NS3 EXAMPLE GUEST_DIR
set -u
ns3=$1
example=$2
dir=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
"$ns3" --quantum 10us --delay 5us -- qemu-system-aarch64 >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 2 ] || { echo "FAIL: qsync-ns3 exited $rc, not 2" >&2; fail=1; }
grep -q "delay (5000 ns) is shorter than the quantum (10000 ns)" "$work/err" ||
    { echo "FAIL: qsync-ns3's message: $(cat "$work/err")" >&2; fail=1; }
"$example" --guest="$dir" --quantum=100us --delay=50us >"$work/out2" 2>"$work/err2"
rc=$?
[ $rc -ne 0 ] || { echo "FAIL: the example ran with a delay shorter than the quantum" >&2; fail=1; }
grep -q "delay (50000 ns) is shorter than the quantum (100000 ns)" "$work/err2" ||
    { echo "FAIL: the library's message: $(cat "$work/err2")" >&2; fail=1; }
"$ns3" --quantum 10us --delay 1ms --rate fast -- qemu-system-aarch64 >"$work/out3" 2>"$work/err3"
rc=$?
[ $rc -eq 2 ] && grep -q -- "--rate fast: not a data rate" "$work/err3" ||
    { echo "FAIL: --rate fast: exit $rc, $(cat "$work/err3")" >&2; fail=1; }

# QEMU exits at once with status 1: the exit callback's report.
"$ns3" --quantum 100us --delay 1ms -- qemu-system-aarch64 -M virt -nodefaults -display none \
    -kernel "$work/no-such-kernel" >"$work/out4" 2>"$work/err4"
rc=$?
[ $rc -eq 1 ] || { echo "FAIL: a guest that cannot start: qsync-ns3 exited $rc, not 1" >&2; fail=1; }
grep -q "qsync-ns3: the guest exited with 1 at .*no-such-kernel" "$work/err4" ||
    { echo "FAIL: a guest that cannot start: $(cat "$work/err4")" >&2; fail=1; }

# An unknown flag is called unknown, wherever it stands (last, it was
# taken for a flag missing its value).
for args in "--bogus" "--bogus x -- q"; do
    "$ns3" $args >"$work/out6" 2>"$work/err6"
    rc=$?
    [ $rc -eq 2 ] && grep -q "qsync-ns3: unknown option --bogus" "$work/err6" ||
        { echo "FAIL: qsync-ns3 $args: exit $rc, $(cat "$work/err6")" >&2; fail=1; }
done

# A QEMU binary that does not exist: exit 2, saying so, no abort.
"$ns3" --quantum 100us --delay 1ms -- "$work/no-such-qemu" -M virt >"$work/out5" 2>"$work/err5"
rc=$?
[ $rc -eq 2 ] && grep -q "qsync-ns3: cannot start QEMU: cannot start '$work/no-such-qemu': no such file or directory" "$work/err5" ||
    { echo "FAIL: a QEMU that does not exist: exit $rc, $(cat "$work/err5")" >&2; fail=1; }

# The simulation aborts (SIGABRT, as NS_FATAL_ERROR does) while the guest
# runs: QEMU is gone within 1 s.
"$ns3" --quantum 100us --delay 1ms -- qemu-system-aarch64 -M virt,dtb-randomness=off \
    -cpu cortex-a57 -m 256 -nodefaults -display none -serial stdio -no-reboot \
    -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" -append 'console=ttyAMA0 quiet' \
    >"$work/out5" 2>"$work/err5" &
pid=$!
qemu=
i=0
while [ $i -lt 100 ] && [ -z "$qemu" ]; do
    sleep 0.1
    qemu=$(pgrep -P $pid -f qemu-system-aarch64 | head -1)
    i=$((i + 1))
done
if [ -z "$qemu" ]; then
    echo "FAIL: no QEMU under qsync-ns3 after 10 s" >&2; fail=1; kill -9 $pid
else
    sleep 0.5
    kill -ABRT $pid
    wait $pid
    # Alive means in the process table and not a zombie (whoever adopted
    # it may not reap it at once).
    alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }
    i=0
    while [ $i -lt 10 ] && alive "$qemu"; do sleep 0.1; i=$((i + 1)); done
    if alive "$qemu"; then
        echo "FAIL: QEMU $qemu still runs 1 s after qsync-ns3 aborted" >&2; kill -9 "$qemu"; fail=1
    fi
fi
[ $fail -eq 0 ] || exit 1
cat "$work/err" "$work/err2" | grep -m2 "shorter"
