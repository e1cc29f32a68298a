#!/bin/sh
# qsync-step --mode qqq and --mode fifo step the project's guest on stock
# QEMU through our plugin's personalities, with the same exact stops as
# --mode plugin: the same quanta and final virtual time (--json), the same
# deadline and virtual time at every stop (--csv), and the same bytes
# printed by the guest.
# usage: personalities_step_test.sh QSYNC_STEP GUEST_ELF
set -u
. "$(dirname "$0")/step_test_lib.sh"
append="time 1000000 delay=1000"

# run NAME QSYNC_STEP_OPTIONS... -- QEMU_EXTRA_ARGS...: one run to --until.
run() {
    name=$1
    shift
    "$step" --json "$work/$name.json" --csv "$work/$name.csv" "$@" \
        -append "$append" >"$work/$name.out" 2>"$work/$name.err"
    rc=$?
    [ $rc -eq 0 ] || fail "$name exited $rc: $(cat "$work/$name.err")"
}

# same A B QUANTA VIRTUAL_NS MODE: B (in MODE) stopped where A did, at every
# stop, and the guest printed the same bytes.
same() {
    for key in quanta virtual_ns; do
        a=$(json_get "$work/$1.json" $key)
        b=$(json_get "$work/$2.json" $key)
        if [ -z "$a" ] || [ "$a" != "$b" ]; then
            fail "$2: \"$key\" is '$b', $1 says '$a'"
        fi
    done
    [ "$(json_get "$work/$1.json" quanta)" = "$3" ] || fail "$1: quanta is not $3"
    [ "$(json_get "$work/$1.json" virtual_ns)" = "$4" ] || fail "$1: virtual_ns is not $4"
    cut -d, -f1-3 "$work/$1.csv" >"$work/$1.stops"
    cut -d, -f1-3 "$work/$2.csv" >"$work/$2.stops"
    cmp -s "$work/$1.stops" "$work/$2.stops" || fail "$2: stops differ from $1's"
    awk -F, 'NR > 1 && $3 != $2 { bad = 1 } END { exit bad }' "$work/$2.csv" ||
        fail "$2: a stop off its deadline"
    grep -q '^qsync-guest: time 100 ' "$work/$2.out" || fail "$2: the guest printed too little"
    cmp -s "$work/$1.out" "$work/$2.out" || fail "$2: the guest's output differs from $1's"
    grep -q "\"mode\": \"$5\"" "$work/$2.json" || fail "$2: mode is not $5"
}

# 1. qqq through our plugin, the adevs -qqq protocol's -icount 1,sleep=off -rtc clock=vm
#    (added by the library), against plugin mode on the same time base
#    (where the firmware alone takes 11 ms).
run plugin1 --quantum 10us --until 20ms --shift 1 -- "$qemu" $guest_args -rtc clock=vm
run qqq1 --mode qqq --quantum 10us --until 20ms -- "$qemu" $guest_args
same plugin1 qqq1 2000 20000000 qqq

# 2. qqq on the user's own -icount shift=0.
run plugin0 --quantum 10us --until 12ms -- "$qemu" $guest_args -rtc clock=vm
run qqq0 --mode qqq --quantum 10us --until 12ms -- "$qemu" $guest_args -icount shift=0,sleep=off
same plugin0 qqq0 1200 12000000 qqq

# 3. fifo through our plugin's FIFO personality (-icount shift=0,sleep=off
#    added by the library), 50 us quanta.
run plugin50 --quantum 50us --until 12ms -- "$qemu" $guest_args
run fifo50 --mode fifo --quantum 50us --until 12ms -- "$qemu" $guest_args
same plugin50 fifo50 240 12000000 fifo

# 4. And with the insn engine, through --plugin-args.
run fifo50insn --mode fifo --quantum 50us --until 12ms --plugin-args engine=insn -- \
    "$qemu" $guest_args
same plugin50 fifo50insn 240 12000000 fifo
run qqq1insn --mode qqq --quantum 10us --until 20ms --plugin-args engine=insn -- \
    "$qemu" $guest_args
same plugin1 qqq1insn 2000 20000000 qqq

# 5. fifo with the option names of the Time Sync Plugin's code and one
#    byte per quantum, as that plugin wrote: the same stops.
run fifo50one --mode fifo --quantum 50us --until 12ms --fifo-done-bytes 1 \
    --fifo-keys HostToGuestPipe,GuestToHostPipe,TimeInMicroSeconds -- "$qemu" $guest_args
same plugin50 fifo50one 240 12000000 fifo

finish "qsync-step personalities"
