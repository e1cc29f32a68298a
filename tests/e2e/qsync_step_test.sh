#!/bin/sh
# qsync-step's contract on real QEMU: the summary, the exit codes, the
# guest's output on stdout, and clear usage errors.
# usage: qsync_step_test.sh QSYNC_STEP GUEST_ELF
set -u
. "$(dirname "$0")/step_test_lib.sh"

# 1. --until ends the run: 500 exact quanta of 10 us, exit code 0. (The
#    firmware alone runs 8.7 ms, so the guest prints nothing yet.) The
#    summary's max_overshoot_insns is the largest in the --csv records: 0.
"$step" --quantum 10us --until 5ms --json "$work/until.json" --csv "$work/until.csv" -- \
    "$qemu" $guest_args -append "compute 100000000" >"$work/until.out" 2>"$work/until.err"
rc=$?
[ $rc -eq 0 ] || fail "--until run exited $rc: $(cat "$work/until.err")"
expect_key "$work/until.json" quanta 500 "--until"
expect_key "$work/until.json" virtual_ns 5000000 "--until"
expect_key "$work/until.json" instructions 5000000 "--until"
[ "$(csv_max_overshoot "$work/until.csv")" = 0 ] || fail "--until: a --csv record past its deadline"
expect_key "$work/until.json" max_overshoot_insns 0 "--until"
expect_key "$work/until.json" exit_status null "--until"
# auto takes the insn engine at 10 us on the default shared-memory channel
# (cheaper there), and the timer engine on the pipes (docs/engines.md).
expect_key "$work/until.json" engine '"insn"' "--until"
grep -q '"guarantees": {"exact": true' "$work/until.json" || fail "--until: guarantees missing"
# QEMU's start-up (to the first stop) is reported apart, and is a part of
# the whole run's wall time.
startup=$(json_get "$work/until.json" startup_s)
wall=$(json_get "$work/until.json" wall_s)
awk -v s="$startup" -v w="$wall" 'BEGIN { exit !(s > 0 && s <= w) }' ||
    fail "--until: startup_s '$startup' is not within wall_s '$wall'"
"$step" --quantum 10us --until 1ms --channel pipe --json "$work/pipe.json" -- \
    "$qemu" $guest_args -append "compute 100000000" >/dev/null 2>"$work/pipe.err" ||
    fail "--channel pipe run failed: $(cat "$work/pipe.err")"
expect_key "$work/pipe.json" engine '"timer"' "--channel pipe"
expect_key "$work/pipe.json" virtual_ns 1000000 "--channel pipe"
expect_key "$work/pipe.json" max_overshoot_insns 0 "--channel pipe"

# 1b. The block engine stops at the first block boundary at or past each
#    deadline: at 7 us quanta over the firmware some stops overshoot, and
#    the summary's max_overshoot_insns is the largest overshoot of the
#    --csv records (virtual_ns - deadline_ns at shift 0), not a constant.
"$step" --engine block --quantum 7us --until 3ms --json "$work/block.json" --csv "$work/block.csv" -- \
    "$qemu" $guest_args -append "compute 100000000" >/dev/null 2>"$work/block.err" ||
    fail "--engine block run failed: $(cat "$work/block.err")"
expect_key "$work/block.json" engine '"block"' "--engine block"
block_max=$(csv_max_overshoot "$work/block.csv")
[ "$block_max" -gt 0 ] || fail "--engine block: no stop past its deadline in --csv"
expect_key "$work/block.json" max_overshoot_insns "$block_max" "--engine block"

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

# 3. --stats on the compute guest: every period is the quantum, no outliers.
#    --csv twice: identical records apart from the wall-time column.
for run in 1 2; do
    "$step" --quantum 20us --until 2ms --stats --csv "$work/run$run.csv" -- \
        "$qemu" $guest_args -append "compute 100000000" >/dev/null 2>"$work/stats$run.err"
    rc=$?
    [ $rc -eq 0 ] || fail "--stats run $run exited $rc: $(cat "$work/stats$run.err")"
done
grep -q '^| 20 | 20.00 | 20 | 20 | 20 | 100 | / |$' "$work/stats1.err" ||
    fail "--stats table: $(cat "$work/stats1.err")"
# The start-up has its own line; the wall line covers the other 99 quanta.
grep -q "^Start-up (us): [0-9.]*, from QEMU's start to the first stop" "$work/stats1.err" ||
    fail "--stats: no start-up line: $(cat "$work/stats1.err")"
grep -q '^Wall time per quantum (us): mean .*, over 99 quanta$' "$work/stats1.err" ||
    fail "--stats: the wall line is not over the 99 quanta after the first: $(cat "$work/stats1.err")"
[ "$(head -1 "$work/run1.csv")" = "quantum,deadline_ns,virtual_ns,instructions,idle,wall_ns" ] ||
    fail "--csv header: $(head -1 "$work/run1.csv")"
[ "$(wc -l <"$work/run1.csv")" -eq 101 ] || fail "--csv: $(wc -l <"$work/run1.csv") lines, expected 101"
cut -d, -f1-5 "$work/run1.csv" >"$work/a.csv"
cut -d, -f1-5 "$work/run2.csv" >"$work/b.csv"
cmp -s "$work/a.csv" "$work/b.csv" || fail "--csv: two runs differ beyond the wall column"
awk -F, 'NR > 1 && $3 != $2 { bad = 1 } END { exit bad }' "$work/run1.csv" ||
    fail "--csv: a stop off its deadline"

# 3b. SIGINT ends a run whose loop polls for every answer (1 us quanta, a
#    guest of a minute or more at that quantum): the loop still serves the
#    signal at once (within 5 s, a generous bound), QEMU is ended and the
#    exit code says why. --poll 1s holds the loop longest.
"$step" --quantum 1us --poll 1s -- "$qemu" $guest_args -append "compute 4000000000" \
    >/dev/null 2>"$work/int.err" &
pid=$!
sleep 1
kill -INT $pid
t0=$(date +%s)
wait $pid
rc=$?
took=$(($(date +%s) - t0))
[ $rc -eq 130 ] || fail "SIGINT in a polled run: exited $rc, expected 130: $(cat "$work/int.err")"
[ $took -le 5 ] || fail "SIGINT in a polled run: qsync-step took $took s to end"
grep -q "^qsync-step: Interrupt, ending QEMU" "$work/int.err" ||
    fail "SIGINT in a polled run: $(cat "$work/int.err")"

# 4. Usage and set-up errors exit 2 with a message naming the problem.
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
check_usage "--mode 'pipes'" --mode pipes -- "$qemu"
check_usage "not a QEMU plugin: give libqsync-plugin.so" \
    --plugin /usr/lib/x86_64-linux-gnu/libuv.so.1 -- "$qemu" -M pc -nodefaults -display none

# 5. QEMU fails after the plugin loaded: its status is passed on, and the
#    reason is named.
"$step" -- "$qemu" -M pc -nodefaults -display none -kernel /nonexistent.elf >/dev/null 2>"$work/k.err"
rc=$?
[ $rc -eq 1 ] || fail "missing kernel: exited $rc, expected QEMU's 1"
grep -q "qsync-step: QEMU exited with status 1: .*could not open kernel file '/nonexistent.elf'" "$work/k.err" ||
    fail "missing kernel: $(cat "$work/k.err")"

# 6. Our plugin refuses a QEMU without -icount, naming what is missing.
plugin=$(dirname "$step")/../lib/qsync/libqsync-plugin.so
"$qemu" -M pc -nodefaults -display none -plugin "$plugin,fd_in=0,fd_out=1" >/dev/null 2>"$work/i.err"
rc=$?
[ $rc -ne 0 ] || fail "plugin without -icount: QEMU started"
grep -q "qsync-plugin: this plugin needs -icount" "$work/i.err" || fail "no -icount: $(cat "$work/i.err")"

# 7. A controller already gone when QEMU starts (parent= names a process
#    that has exited): QEMU ends at once instead of running free. One that
#    lives but is no ancestor of QEMU is refused, naming what was seen.
sh -c 'exit 0' &
gone=$!
wait $gone
"$qemu" -M pc -nodefaults -display none -icount shift=0,sleep=off \
    -plugin "$plugin,fd_in=0,fd_out=1,parent=$gone" >/dev/null 2>"$work/p.err" </dev/null
rc=$?
[ $rc -ne 0 ] || fail "parent gone: QEMU ran"
grep -q "the controller (pid $gone) is gone" "$work/p.err" || fail "parent gone: $(cat "$work/p.err")"
sleep 60 &
sibling=$!
"$qemu" -M pc -nodefaults -display none -icount shift=0,sleep=off \
    -plugin "$plugin,fd_in=0,fd_out=1,parent=$sibling" >/dev/null 2>"$work/p.err" </dev/null
rc=$?
kill $sibling
[ $rc -ne 0 ] || fail "parent not an ancestor: QEMU ran"
grep -q "the controller (pid $sibling, sleep) is neither QEMU's parent nor one of its ancestors.*QEMU's parent is $$ " "$work/p.err" ||
    fail "parent not an ancestor: $(cat "$work/p.err")"
check_usage "--quiet cannot be combined" --quiet --stats -- "$qemu"
check_usage "--csv '/nonexistent/x.csv'" --csv /nonexistent/x.csv -- "$qemu"
check_usage "whole microseconds" --mode qqq --quantum 1500ns -- "$qemu"
# A quantum past the plugin's quantum_ns= limit names --quantum, and the
# largest one is one that the real plugin takes.
check_usage "^qsync-step: --quantum '2000000s': at most 1000000s" --quantum 2000000s -- \
    "$qemu" $guest_args
"$step" --quantum 1000000s --until 1ms --json "$work/maxq.json" -- "$qemu" $guest_args \
    -append "compute 100000000" >/dev/null 2>"$work/maxq.err" ||
    fail "--quantum 1000000s: $(cat "$work/maxq.err")"
expect_key "$work/maxq.json" virtual_ns 1000000 "--quantum 1000000s --until 1ms"

# 8. --timestamps on the time guest, which prints its TSC (virtual ns since
#    reset) in every line: each line is the guest's own, after V, the time
#    of the stop that ended the quantum in which it was completed (a
#    multiple of the quantum, or the time at QEMU's exit for the last
#    quantum). The guest read tsc before writing its line, so tsc <= V; it
#    reads the next tsc after that line is out, so that one is past the
#    line's quantum's start, V - quantum.
time_args="time count=20 delay=2000"
"$step" --quantum 10us --timestamps --json "$work/ts.json" -- "$qemu" $guest_args \
    -append "$time_args" >"$work/ts.out" 2>"$work/ts.err"
rc=$?
[ $rc -eq 1 ] || fail "--timestamps run exited $rc, expected 1: $(cat "$work/ts.err")"
"$step" --quantum 10us -- "$qemu" $guest_args -append "$time_args" >"$work/plain.out" 2>/dev/null
sed 's/^\[ *[0-9]*\.[0-9]*\] //' "$work/ts.out" | cmp -s - "$work/plain.out" ||
    fail "--timestamps: the guest's output differs from a run without it"
final=$(json_get "$work/ts.json" virtual_ns)
awk -v q=10000 -v final="$final" '
    function bad(msg) { print "--timestamps: " msg ": " $0; failed = 1 }
    {
        if (!match($0, /^\[ *[0-9]+\.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]\] qsync-guest: /)) {
            bad("no timestamp"); next
        }
        ts = substr($0, 2, index($0, "]") - 2); gsub(/ /, "", ts)
        split(ts, a, "."); v = a[1] * 1000000000 + a[2]
        if (v < prev) bad("time went back")
        if (v % q != 0 && v != final) bad("neither a stop of the quantum nor the exit at " final)
        prev = v
        if ($0 ~ / time [0-9]+ hpet_ns=/) {
            tsc = $NF; sub(/^tsc=/, "", tsc); tsc += 0
            if (tsc > v) bad("tsc past V")
            if (lines > 0 && tsc <= last_v - q) bad("tsc before the previous line'"'"'s quantum")
            last_v = v; lines++
        }
    }
    END {
        if (lines != 20) { print "--timestamps: " lines " time lines, expected 20"; failed = 1 }
        exit failed
    }' "$work/ts.out" >"$work/ts.check" || fail "$(cat "$work/ts.check")"

# 9. On a terminal the live progress line and the guest's output never
#    share a line: the progress line is cleared (\r ESC[K) before the
#    guest's bytes. Run under a pseudo-terminal (script), at 1 us quanta so
#    that the progress line is drawn while the guest prints.
if command -v script >/dev/null 2>&1; then
    # One command line for script's shell, on one line (guest_args spans
    # several; the paths hold no quote).
    one_line_args=$(echo $guest_args)
    cmd="'$step' --quantum 1us -- '$qemu' $one_line_args -append 'time count=200 delay=200000'"
    # script(1) ends the session when its input ends: give it an input
    # that stays open for the run (a FIFO held by a sleep we then end).
    mkfifo "$work/tty.in"
    sleep 600 >"$work/tty.in" &
    holder=$!
    script -qec "$cmd" /dev/null <"$work/tty.in" >"$work/pty.out" 2>&1
    rc=$?
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
    [ $rc -eq 1 ] || fail "the run under a terminal exited $rc, expected the guest's 1: $(tail -c 300 "$work/pty.out" | cat -v)"
    lines=$(grep -ac 'qsync-guest: time [0-9]* hpet_ns' "$work/pty.out")
    [ "$lines" -eq 200 ] || fail "under a terminal: $lines time lines of the guest, expected 200"
    draws=$(grep -ao 'real time' "$work/pty.out" | wc -l)
    [ "$draws" -ge 2 ] || fail "under a terminal: the progress line was drawn $draws times; the check needs 2"
    if LC_ALL=C grep -aqP 'real time[^\r\n]' "$work/pty.out"; then
        fail "under a terminal: the guest's output went on the progress line: $(LC_ALL=C grep -aoP '.{0,40}real time[^\r\n].{0,30}' "$work/pty.out" | head -1 | cat -v)"
    fi
else
    echo "qsync-step: script(1) not found; the terminal check was skipped"
fi

finish "qsync-step"
