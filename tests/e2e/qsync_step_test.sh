#!/bin/sh
# qsync-step's contract on real QEMU: the summary, the exit codes, the
# guest's output on stdout, and clear usage errors.
# usage: qsync_step_test.sh QSYNC_STEP GUEST_ELF
set -u
step=$1
guest=$2
qemu=${QSYNC_TEST_QEMU:-qemu-system-x86_64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# json_get FILE KEY: prints the value of a top-level key of qsync-step's JSON.
json_get() {
    sed -n "s/^  \"$2\": \(.*\)$/\1/p" "$1" | sed 's/,$//'
}

expect_key() {
    got=$(json_get "$1" "$2")
    [ "$got" = "$3" ] || fail "$4: \"$2\" is '$got', expected '$3'"
}

guest_args="-M pc -nodefaults -display none -serial stdio -no-reboot
 -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel $guest"

# 1. --until ends the run: 500 exact quanta of 10 us, exit code 0. (The
#    firmware alone runs 8.7 ms, so the guest prints nothing yet.)
"$step" --quantum 10us --until 5ms --json "$work/until.json" -- \
    "$qemu" $guest_args -append "compute 100000000" >"$work/until.out" 2>"$work/until.err"
rc=$?
[ $rc -eq 0 ] || fail "--until run exited $rc: $(cat "$work/until.err")"
expect_key "$work/until.json" quanta 500 "--until"
expect_key "$work/until.json" virtual_ns 5000000 "--until"
expect_key "$work/until.json" instructions 5000000 "--until"
expect_key "$work/until.json" max_overshoot_insns 0 "--until"
expect_key "$work/until.json" exit_status null "--until"
expect_key "$work/until.json" engine '"insn"' "--until"
grep -q '"guarantees": {"exact": true' "$work/until.json" || fail "--until: guarantees missing"

# 2. The guest ends by itself: qsync-step exits with QEMU's status (1 for
#    the guest's success through isa-debug-exit), JSON on stdout.
"$step" --quantum 100us --json - -- "$qemu" $guest_args -append "compute 1000000" \
    >"$work/end.out" 2>"$work/end.err"
rc=$?
[ $rc -eq 1 ] || fail "run to the end exited $rc, expected 1: $(cat "$work/end.err")"
grep -q '^qsync-guest: compute done' "$work/end.out" || fail "guest did not finish"
sed -n '/^{$/,/^}$/p' "$work/end.out" >"$work/end.json"
expect_key "$work/end.json" exit_status 1 "run to the end"
expect_key "$work/end.json" max_overshoot_insns 0 "run to the end"

# 3. Usage and set-up errors exit 2 with a message naming the problem.
check_usage() {
    expect=$1
    shift
    "$step" "$@" >"$work/u.out" 2>"$work/u.err"
    rc=$?
    [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2"
    grep -q -- "$expect" "$work/u.err" || fail "'$*': stderr lacks '$expect': $(cat "$work/u.err")"
}
check_usage "--quantum '5': missing unit" --quantum 5 -- "$qemu"
check_usage "--until 'soon'" --until soon -- "$qemu"
check_usage "--shift '11'" --shift 11 -- "$qemu"
check_usage "no QEMU command" --quantum 1ms
check_usage "plugin_path '/nonexistent.so'" --plugin /nonexistent.so -- "$qemu"
check_usage "cannot start '/nonexistent/qemu'" -- /nonexistent/qemu
check_usage "the library sets -icount itself" -- "$qemu" -icount shift=0
check_usage "ended before the plugin's handshake" -- "$qemu" -no-such-option

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "qsync-step: all checks passed"
