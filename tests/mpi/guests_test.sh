#!/usr/bin/env bash
# mpi.guests.*: the test guest on 1, 2 and 4 ranks through libqsync-mpi
# (tests/mpi/mpi_guests.c) must print the same log, byte for byte, as on
# one rank: every stop (deadline, virtual time, instructions), every line
# of the guests, every frame's transmit time, every exit.
# usage: guests_test.sh MPIRUN PROGRAM PLUGIN GUEST_ELF WINDOW_NS LATENCY_NS NPS APPEND...
#   NPS: the rank counts to compare with one rank, e.g. "2 4 2tcp"
#   (Ntcp: N ranks with Open MPI's TCP transport forced, not shared memory).
set -euo pipefail
mpirun=$1 prog=$2 plugin=$3 elf=$4 window=$5 latency=$6 nps=$7
shift 7
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # NP [MPIRUN ARGS...] -> $work/NP.log
    local tag=$1 np=${1%tcp}
    shift
    local extra=()
    [ "$tag" != "$np" ] && extra=(--mca btl tcp,self --mca btl_tcp_if_include lo)
    local status=0
    "$mpirun" --oversubscribe "${extra[@]}" -np "$np" "$prog" "$plugin" "$elf" "$window" \
        "$latency" "$@" >"$work/$tag.log" 2>"$work/$tag.err" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "FAIL: $tag ranks: exit status $status" >&2
        cat "$work/$tag.err" >&2
        exit 1
    fi
}

run 1 "$@"
stops=$(grep -c '^\[[0-9]*\] stop ' "$work/1.log" || true)
exits=$(grep -c '^\[[0-9]*\] exit ' "$work/1.log" || true)
[ "$stops" -gt 0 ] || { echo "FAIL: no stops on one rank" >&2; cat "$work/1.log" "$work/1.err" >&2; exit 1; }
[ "$exits" -eq $# ] || { echo "FAIL: $exits exits for $# guests" >&2; cat "$work/1.log" >&2; exit 1; }
if grep -q ' overshoot=[^0]' "$work/1.log"; then
    echo "FAIL: a stop overshot its deadline" >&2
    exit 1
fi
for np in $nps; do
    run "$np" "$@"
    if ! cmp -s "$work/1.log" "$work/$np.log"; then
        echo "FAIL: $np ranks printed another log than one rank:" >&2
        diff "$work/1.log" "$work/$np.log" | head -20 >&2
        exit 1
    fi
    echo "ok: $np ranks: the same $(wc -l <"$work/1.log") lines ($stops stops, $exits exits) as one rank"
done
