#!/bin/sh
# A guest that exits with status 1 and no exit callback set: the ns-3
# script stops with a fatal error naming the status and QEMU's message.
# usage: exit_default_test.sh NS3_EXIT_DEFAULT
set -u
prog=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$prog" qemu-system-aarch64 "$work/no-such-kernel" >"$work/out" 2>"$work/err"
rc=$?
fail=0
[ $rc -ne 0 ] || { echo "FAIL: Simulator::Run() returned: $(cat "$work/out")" >&2; fail=1; }
grep -q "the QEMU guest exited with status 1 at .* ns of virtual time; QEMU's stderr ends with: .*no-such-kernel" \
    "$work/err" || { echo "FAIL: the message: $(cat "$work/err")" >&2; fail=1; }
[ $fail -eq 0 ] || exit 1
grep -m1 "the QEMU guest" "$work/err"
