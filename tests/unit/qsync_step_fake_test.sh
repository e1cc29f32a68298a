#!/bin/sh
# qsync-step against the fake QEMU peer (fake_qemu.c), no QEMU needed:
# what QEMU inherits from it, and argument checks that name the user's flag.
# usage: qsync_step_fake_test.sh QSYNC_STEP FAKE_QEMU
set -u
step=$1
fake=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# 1. --csv (and nothing else of qsync-step's) is not inherited by QEMU. The
#    fake lists every descriptor above 2 it holds. Descriptors 3 to 9 are
#    taken first, so that the CSV file lands above the channel's 3 to 6,
#    which the spawn would otherwise dup over it.
"$step" --quantum 100us --until 1ms --plugin "$fake" --csv "$work/q.csv" -- "$fake" fds \
    >"$work/fds.out" 2>"$work/fds.err" \
    3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null 8</dev/null 9</dev/null
rc=$?
[ $rc -eq 0 ] || fail "--csv run exited $rc: $(cat "$work/fds.err")"
grep -q '^fake-qemu: fd 3 -> ' "$work/fds.err" || fail "the fake listed no descriptors: $(cat "$work/fds.err")"
if grep -q "q\.csv" "$work/fds.err"; then
    fail "QEMU inherited the --csv file: $(grep 'q\.csv' "$work/fds.err")"
fi
[ "$(wc -l <"$work/q.csv")" -eq 11 ] || fail "--csv: $(wc -l <"$work/q.csv") lines, expected 11"

# 2. A quantum past the plugin's limit is refused before QEMU starts, naming
#    --quantum and the limit (the plugin would name quantum_ns=, an option
#    the user never gave).
check_usage() {
    expect=$1
    shift
    "$step" "$@" >"$work/u.out" 2>"$work/u.err"
    rc=$?
    [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2: $(cat "$work/u.err")"
    grep -q -- "$expect" "$work/u.err" || fail "'$*': stderr lacks '$expect': $(cat "$work/u.err")"
    if grep -q "fake-qemu" "$work/u.err"; then
        fail "'$*': QEMU was started"
    fi
}
check_usage "^qsync-step: --quantum '2000000s': at most 1000000s (10^15 ns, the plugin's limit)" \
    --quantum 2000000s --plugin "$fake" -- "$fake" good
check_usage "^qsync-step: --quantum '1000000000000001ns': at most 1000000s" \
    --quantum 1000000000000001ns --plugin "$fake" -- "$fake" good
check_usage "^qsync-step: --quantum '1001s': fifo mode's quantum is at most 1000s" \
    --mode fifo --quantum 1001s --plugin "$fake" -- "$fake" fifo-one
check_usage "^qsync-step: --quantum '3000s': qqq mode grants at most 2147483647us" \
    --mode qqq --quantum 3000s --until 3000s -- "$fake" qqq-good
# The largest quantum the plugin takes is accepted.
"$step" --quantum 1000000s --until 1000000s --plugin "$fake" -- "$fake" good \
    >/dev/null 2>"$work/max.err" || fail "--quantum 1000000s refused: $(cat "$work/max.err")"

# 3. The library's own refusals are led by the flag that set the option.
check_usage "^qsync-step: --plugin-args or --engine: plugin_args: 'fd_in' is set by the library" \
    --plugin-args fd_in=9 --plugin "$fake" -- "$fake" good
check_usage "^qsync-step: --plugin: plugin_path '/nonexistent.so'" \
    --plugin /nonexistent.so -- "$fake" good
check_usage "^qsync-step: --pin '1000': CPU 1000 is not one this process may run on" \
    --pin 1000 --plugin "$fake" -- "$fake" good

# 4. --poll: a duration (0 included) up to 1 s, on the shared-memory channel
#    only, and never with --pin.
check_usage "^qsync-step: --poll '5': missing unit" --poll 5 --plugin "$fake" -- "$fake" good
check_usage "^qsync-step: --poll '2s': at most 1s" --poll 2s --plugin "$fake" -- "$fake" good
check_usage "^qsync-step: --poll applies to the shared-memory channel only" \
    --poll 1ms --channel pipe --plugin "$fake" -- "$fake" good
check_usage "^qsync-step: --poll applies to the shared-memory channel only" \
    --poll 1ms --mode qqq --quantum 10us -- "$fake" qqq-good
check_usage "^qsync-step: --poll: nothing polls with --pin" \
    --poll 1ms --pin 0 --plugin "$fake" -- "$fake" good
for poll in 0 50us 1s; do
    "$step" --quantum 1us --until 1ms --poll $poll --json "$work/poll.json" --plugin "$fake" \
        -- "$fake" good >/dev/null 2>"$work/poll.err" || fail "--poll $poll: $(cat "$work/poll.err")"
    grep -q '"quanta": 1000,' "$work/poll.json" || fail "--poll $poll: $(cat "$work/poll.json")"
done

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "qsync-step on the fake QEMU: all checks passed"
