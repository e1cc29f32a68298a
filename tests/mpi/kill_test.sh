#!/usr/bin/env bash
# mpi.kill.*: a fault in the middle of an MPI run ends every rank, says
# why, and leaves no QEMU on the host.
# usage: kill_test.sh MPIRUN PROGRAM PLUGIN GUEST_ELF WHAT
#   WHAT: rank   (rank 1 is SIGKILLed)
#         qemu   (the QEMU under rank 1 is SIGKILLed)
#         mpirun (mpirun itself is SIGKILLed)
#         sigterm (mpirun gets SIGTERM, as from a batch system)
set -euo pipefail
mpirun=$1 prog=$2 plugin=$3 elf=$4 what=$5
work=$(mktemp -d)
mp=
cleanup() {
    [ -n "$mp" ] && kill -9 "$mp" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

children() { # PID -> its children's pids
    cat /proc/"$1"/task/*/children 2>/dev/null || true
}
comm() { cat /proc/"$1"/comm 2>/dev/null || true; }

# Two ranks, a guest each, computing for far longer than the test lasts.
"$mpirun" --oversubscribe -np 2 "$prog" "$plugin" "$elf" 100000 100000 \
    "compute 4000000000" "compute 4000000000" >"$work/out" 2>"$work/err" &
mp=$!

# The ranks, and a QEMU under each of them.
ranks=() qemus=()
for _ in $(seq 300); do
    ranks=() qemus=()
    for c in $(children "$mp"); do
        [ "$(comm "$c")" = "$(basename "$prog" | cut -c1-15)" ] || continue
        ranks+=("$c")
        for q in $(children "$c"); do
            case "$(comm "$q")" in qemu-system-*) qemus+=("$q") ;; esac
        done
    done
    [ ${#ranks[@]} -eq 2 ] && [ ${#qemus[@]} -eq 2 ] && grep -q 'stop' "$work/out" 2>/dev/null && break
    # Wait for the first window's log too: the run is under way.
    sleep 0.1
done
if [ ${#ranks[@]} -ne 2 ] || [ ${#qemus[@]} -ne 2 ]; then
    echo "FAIL: did not find 2 ranks with a QEMU each (ranks: ${ranks[*]:-}, QEMUs: ${qemus[*]:-})" >&2
    cat "$work/err" >&2
    exit 1
fi
# The rank numbers: rank 1 is the one whose QEMU runs guest 1; ask /proc.
rank1=
for r in "${ranks[@]}"; do
    if tr '\0' '\n' <"/proc/$r/environ" | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then rank1=$r; fi
done
[ -n "$rank1" ] || { echo "FAIL: no rank 1 among ${ranks[*]}" >&2; exit 1; }
qemu1=$(children "$rank1" | head -1)

case "$what" in
rank) kill -9 "$rank1" ;;
qemu) kill -9 "$qemu1" ;;
mpirun) kill -9 "$mp" ;;
sigterm) kill -TERM "$mp" ;;
*) echo "FAIL: unknown fault '$what'" >&2; exit 2 ;;
esac

# Everything ends: mpirun, both ranks, both QEMUs. A generous liveness
# bound: Open MPI waits a little before it kills the other ranks.
status=0
for _ in $(seq 300); do
    alive=0
    for p in "$mp" "${ranks[@]}" "${qemus[@]}"; do
        if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then
            alive=$((alive + 1))
        fi
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
done
if [ "$what" != mpirun ]; then
    wait "$mp" || status=$?
    mp=
fi
left=()
for p in "${ranks[@]}" "${qemus[@]}"; do
    if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then
        left+=("$p:$(comm "$p")")
    fi
done
if [ ${#left[@]} -gt 0 ]; then
    echo "FAIL: $what: still running 30 s later: ${left[*]}" >&2
    cat "$work/err" >&2
    kill -9 "${ranks[@]}" "${qemus[@]}" 2>/dev/null || true
    exit 1
fi

# What the user is told.
case "$what" in
rank) want='rank 1 with PID .* exited on signal 9' ;;
qemu) want='qsync-mpi: rank 1: guest 1: QEMU was killed by signal 9; ending every rank' ;;
sigterm) want='' ;;  # mpirun's own words vary; its status says it
mpirun) want='' ;;   # mpirun forwarded the ranks' output: nobody is left to print
esac
if [ -n "$want" ] && ! grep -q "$want" "$work/err" "$work/out"; then
    echo "FAIL: $what: the message '$want' was not printed:" >&2
    cat "$work/err" >&2
    exit 1
fi
if [ "$what" != mpirun ] && [ "$status" -eq 0 ]; then
    echo "FAIL: $what: mpirun exited with status 0" >&2
    exit 1
fi
echo "ok: $what: every rank and both QEMUs ended (mpirun's status: $status)"
[ -n "$want" ] && grep -h "$want" "$work/err" "$work/out" | head -2
exit 0
