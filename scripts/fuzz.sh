#!/usr/bin/env bash
# Fuzzes the native protocol's decoder (tests/fuzz/fuzz_wire.c) with
# libFuzzer under ASan and UBSan, starting from tests/fuzz/corpus.
# usage: scripts/fuzz.sh [SECONDS]   (default 60; CI runs 60)
# Longer runs: scripts/fuzz.sh 3600, or pass libFuzzer flags through
# QSYNC_FUZZ_FLAGS, e.g. QSYNC_FUZZ_FLAGS="-runs=10000000".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
command -v clang >/dev/null || { echo "fuzz: clang is missing (scripts/setup.sh installs it)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$here/src/proto" "$here/tests/fuzz/fuzz_wire.c" "$here/src/proto/wire.c" -o "$work/fuzz_wire"
# libFuzzer adds what it finds to its first corpus directory: a copy, so the
# tree stays as committed.
cp -r "$here/tests/fuzz/corpus" "$work/corpus"
cd "$work"
# shellcheck disable=SC2086
./fuzz_wire -max_total_time="$seconds" -max_len=4200 -print_final_stats=1 \
    ${QSYNC_FUZZ_FLAGS:-} corpus 2>&1 | grep -E '^(stat::number_of_executed_units|Done|==|SUMMARY)' || true
# A crash leaves an artifact; fail loudly with it.
if ls crash-* leak-* timeout-* >/dev/null 2>&1; then
    echo "fuzz: the decoder failed on an input:" >&2
    for f in crash-* leak-* timeout-*; do [ -e "$f" ] && base64 "$f" >&2; done
    exit 1
fi
echo "fuzz: no failure in $seconds s"
