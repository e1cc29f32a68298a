#!/usr/bin/env bash
# mpi.qsync-net.*: qsync-net --mpi under mpirun writes the same stdout, the
# same pcap and the same JSON (wall_s aside), byte for byte, as qsync-net
# in one process, for each rank count given.
# usage: qsync_net_mpi_test.sh MPIRUN QSYNC_NET NPS QSYNC-NET-ARGS...
#   NPS: e.g. "1 2 4 2tcp" (Ntcp: Open MPI's TCP transport forced)
# The arguments must not name --pcap or --json: the test adds them.
set -euo pipefail
mpirun=$1 net=$2 nps=$3
shift 3
if ! "$net" --version | grep -q libpcap; then
    echo "SKIP: qsync-net was built without libpcap (install libpcap-dev), and this test compares pcaps"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # TAG COMMAND...: $work/TAG.{out,err,pcap,json}, status in $work/TAG.rc
    local tag=$1 status=0
    shift
    "$@" --pcap "$work/$tag.pcap" --json "$work/$tag.json" "${args[@]}" \
        >"$work/$tag.out" 2>"$work/$tag.err" || status=$?
    echo "$status" >"$work/$tag.rc"
}
args=("$@")
start=$(date +%s)
run single "$net"
ref_rc=$(cat "$work/single.rc")
[ -s "$work/single.pcap" ] || { echo "FAIL: one process wrote no pcap" >&2; cat "$work/single.err" >&2; exit 1; }
grep -q '"quanta"' "$work/single.json" || { echo "FAIL: one process wrote no JSON" >&2; exit 1; }
grep -v '"wall_s"' "$work/single.json" >"$work/single.j"
fails=0
for tag in $nps; do
    np=${tag%tcp}
    extra=()
    [ "$tag" != "$np" ] && extra=(--mca btl tcp,self --mca btl_tcp_if_include lo)
    run "$tag" "$mpirun" --oversubscribe "${extra[@]}" -np "$np" "$net" --mpi
    rc=$(cat "$work/$tag.rc")
    # mpirun reports a rank's non-zero status as its own 1 (with a note).
    if [ "$rc" != "$ref_rc" ] && ! { [ "$ref_rc" != 0 ] && [ "$rc" != 0 ]; }; then
        echo "FAIL: $tag ranks: exit status $rc, one process $ref_rc" >&2
        cat "$work/$tag.err" >&2
        fails=$((fails + 1))
        continue
    fi
    grep -v '"wall_s"' "$work/$tag.json" >"$work/$tag.j" || true
    for f in out pcap j; do
        if ! cmp -s "$work/single.$f" "$work/$tag.$f"; then
            echo "FAIL: $tag ranks: the $f differs from one process's:" >&2
            diff <(od -c "$work/single.$f" | head -2000) <(od -c "$work/$tag.$f" | head -2000) | head -10 >&2
            [ "$f" = pcap ] || diff "$work/single.$f" "$work/$tag.$f" | head -20 >&2
            fails=$((fails + 1))
        fi
    done
    echo "ok: $tag ranks: stdout ($(wc -l <"$work/single.out") lines), pcap ($(wc -c <"$work/single.pcap") bytes) and JSON as one process's"
done
[ $fails -eq 0 ] || exit 1
grep -E '"(quanta|frames|frames_dropped)"' "$work/single.json"
echo "qsync-net --mpi: $(($(date +%s) - start)) s"
