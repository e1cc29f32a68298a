#!/usr/bin/env bash
# Fuzzes the protocols' decoders with libFuzzer under ASan and UBSan: the
# native one (tests/fuzz/fuzz_wire.c, from tests/fuzz/corpus) and the qqq and
# FIFO ones (tests/fuzz/fuzz_legacy.c, from tests/fuzz/corpus-legacy).
# usage: scripts/fuzz.sh [SECONDS]   (per target; default 60; CI runs 30)
# Longer runs: scripts/fuzz.sh 3600, or pass libFuzzer flags through
# QSYNC_FUZZ_FLAGS, e.g. QSYNC_FUZZ_FLAGS="-runs=10000000".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
command -v clang >/dev/null || { echo "fuzz: clang is missing (scripts/setup.sh installs it)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
# target  source  corpus
for t in "fuzz_wire wire.c corpus" "fuzz_legacy legacy.c corpus-legacy"; do
    set -- $t
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I"$here/src/proto" "$here/tests/fuzz/$1.c" "$here/src/proto/$2" -o "$work/$1"
    # libFuzzer adds what it finds to its first corpus directory: a copy, so
    # the tree stays as committed.
    cp -r "$here/tests/fuzz/$3" "$work/$3"
    mkdir -p "$work/$1.out"
    (cd "$work/$1.out" && "$work/$1" -max_total_time="$seconds" -max_len=4200 -print_final_stats=1 \
        ${QSYNC_FUZZ_FLAGS:-} "$work/$3" 2>&1 |
        grep -E '^(stat::number_of_executed_units|Done|==|SUMMARY)' || true)
    # A crash leaves an artifact; fail loudly with it.
    if ls "$work/$1.out"/crash-* "$work/$1.out"/leak-* "$work/$1.out"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $1 failed on an input:" >&2
        for f in "$work/$1.out"/crash-* "$work/$1.out"/leak-* "$work/$1.out"/timeout-*; do
            [ -e "$f" ] && base64 "$f" >&2
        done
        status=1
    else
        echo "fuzz: $1: no failure in $seconds s"
    fi
done
exit $status
