#!/bin/sh
# The two-guest example: guests A (10.0.0.1) and B (10.0.0.2) and the ns-3
# node (10.0.0.3) on one CSMA channel; each guest pings the other twice and
# the ns-3 node twice, every ping answered, and both power off with 0.
# usage: two_guests_test.sh EXAMPLE GUEST_DIR
set -u
example=$1
dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$example" --guest="$dir" --quantum=100us --delay=500us >"$work/out" 2>"$work/err"
rc=$?
tr -d '\r' <"$work/out" >"$work/log"
fail=0
[ $rc -eq 0 ] || { echo "FAIL: the example exited $rc" >&2; fail=1; }
for g in A B; do
    n=$(grep -c "^$g| 2 packets transmitted, 2 packets received, 0% packet loss$" "$work/log")
    [ "$n" -eq 2 ] || { echo "FAIL: guest $g: $n of its 2 ping runs fully answered" >&2; fail=1; }
    grep -q "^$g| qsync-linux: run exit=0$" "$work/log" || { echo "FAIL: guest $g's run failed" >&2; fail=1; }
done
for ip in 10.0.0.1 10.0.0.2 10.0.0.3; do
    grep -q "| 64 bytes from $ip: seq=1 " "$work/log" || { echo "FAIL: nobody heard from $ip" >&2; fail=1; }
done
n=$(grep -c "^a guest powered off at .*, status 0$" "$work/log")
[ "$n" -eq 2 ] || { echo "FAIL: $n of 2 guests powered off with 0" >&2; fail=1; }
if [ $fail -ne 0 ]; then
    echo "--- stdout" >&2; tail -40 "$work/log" >&2
    echo "--- stderr" >&2; tail -20 "$work/err" >&2
    exit 1
fi
grep -E 'bytes from|powered off' "$work/log"
