#!/usr/bin/env bash
# Mutation testing: does the suite fail when a promise breaks?
#
#   scripts/mutate.sh [NAME...]
#
# Each file tests/mutants/NAME.patch is a small, plausible bug that breaks
# one promise of the documentation. Its header names the promise and the
# tests that guard it:
#
#   Promise: where the docs make it, and what it is
#   Mutant:  what the patch does
#   Guard:   a ctest -R regex: the tests that must fail
#
# The script copies the working tree (tracked and untracked files, not the
# build directories) to a scratch directory made by mktemp, builds it once,
# and checks that the guarding tests pass there. Then, for each mutant: it
# applies the patch (patch -p1 with fuzz, so that patches survive code
# moving around them), rebuilds incrementally, runs the guarding tests,
# prints one of
#
#   KILLED NAME            a guarding test failed: the suite caught the bug
#   SURVIVED NAME          every guarding test passed: a promise is unguarded
#   DOES NOT APPLY NAME    the patch no longer fits the code: refresh it
#   DOES NOT BUILD NAME    the mutated code does not compile: refresh it
#   NO TESTS NAME          the Guard regex matches no test
#
# and restores the files it touched. It ends with the line
# "N passed, M failed" (passed: killed) and exits 1 if any mutant was not
# killed. With NAMEs it runs only those mutants. Not part of .ci/run: it
# takes several minutes (docs/testing.md).
#
# Environment: QSYNC_MUTATE_KEEP=1 keeps the scratch directory;
# QSYNC_MUTATE_JOBS (default 2) sets the build's and ctest's -j.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mutants_dir=$here/tests/mutants
jobs=${QSYNC_MUTATE_JOBS:-2}

die() {
    echo "mutate: $*" >&2
    exit 2
}

# header FILE KEY: the value of a "Key: value" line of a patch's header.
header() {
    sed -n "/^diff \|^--- /q; s/^$2: *//p" "$1" | head -n 1
}

# ---- which mutants ----------------------------------------------------------
names=()
if [ $# -gt 0 ]; then
    for n in "$@"; do
        n=${n%.patch}
        n=${n##*/}
        [ -f "$mutants_dir/$n.patch" ] || die "no mutant '$n' (tests/mutants/$n.patch)"
        names+=("$n")
    done
else
    for f in "$mutants_dir"/*.patch; do
        [ -e "$f" ] || die "no mutants in tests/mutants/"
        n=${f##*/}
        names+=("${n%.patch}")
    done
fi
guards=()
need_linux=0
for n in "${names[@]}"; do
    g=$(header "$mutants_dir/$n.patch" Guard)
    [ -n "$g" ] || die "tests/mutants/$n.patch has no 'Guard:' line"
    [ -n "$(header "$mutants_dir/$n.patch" Promise)" ] ||
        die "tests/mutants/$n.patch has no 'Promise:' line"
    guards+=("$g")
    case "$g" in *linux*) need_linux=1 ;; esac
done

for tool in patch cmake ctest tar setsid; do
    command -v "$tool" >/dev/null || die "'$tool' is missing (scripts/setup.sh installs it)"
done

# ---- the scratch copy -------------------------------------------------------
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qsync-mutate-XXXXXX")
if [ "${QSYNC_MUTATE_KEEP:-0}" = 1 ]; then
    trap 'echo "mutate: scratch directory kept: $scratch" >&2' EXIT
else
    trap 'rm -rf "$scratch"' EXIT
fi
src=$scratch/src
build=$scratch/build
log=$scratch/log
mkdir -p "$src" "$log"

echo "mutate: copying the tree to $src" >&2
if git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$here" && git ls-files -z --cached --others --exclude-standard |
        tar --null --ignore-failed-read -cf - -T - 2>/dev/null) | tar -xf - -C "$src"
else
    tar -C "$here" --exclude='./build*' -cf - . | tar -xf - -C "$src"
fi

cmake_args=(-DQSYNC_WERROR=ON)
if [ $need_linux = 1 ]; then
    # The Linux guests come from Debian's packages; reuse the main build's
    # (make-guest.sh keeps them while they are newer than their sources).
    if [ -d "$here/build/guests" ]; then
        mkdir -p "$build"
        cp -a "$here/build/guests" "$build/guests"
    fi
else
    cmake_args+=(-DQSYNC_LINUX_GUESTS=OFF)
fi

echo "mutate: building the unmutated copy (log: $log/build.log)" >&2
if ! { cmake -S "$src" -B "$build" "${cmake_args[@]}" && cmake --build "$build" -j"$jobs"; } \
    >"$log/build.log" 2>&1; then
    tail -20 "$log/build.log" >&2
    die "the unmutated tree does not build"
fi

# run_guard REGEX LOG: runs the matching tests in a session of their own,
# and afterwards kills whatever is left in it. (The library starts QEMU,
# or the fake QEMU, in a session of its own; those end with their
# controller through the channel or the parent-death signal, even when a
# mutant made a test fail half-way.)
run_guard() {
    local pidfile=$scratch/ctest.pid rc=0
    # What a failing test leaves in $TMPDIR goes with the scratch directory.
    mkdir -p "$scratch/tmp"
    TMPDIR=$scratch/tmp setsid --wait bash -c 'echo $$ >"$1"; shift; exec "$@"' run_guard "$pidfile" \
        ctest --test-dir "$build" -R "$1" -j"$jobs" --output-on-failure >"$2" 2>&1 || rc=$?
    kill -KILL -- -"$(cat "$pidfile")" 2>/dev/null || true
    return $rc
}

# The guards must pass before any mutant can be said to be killed.
all=$(printf '%s\n' "${guards[@]}" | sort -u | paste -sd'|')
echo "mutate: running the guarding tests on the unmutated code ($all)" >&2
if ! run_guard "$all" "$log/baseline.log"; then
    tail -30 "$log/baseline.log" >&2
    die "the guarding tests fail without any mutant; fix the suite first"
fi

# ---- the mutants ------------------------------------------------------------
passed=0
failed=0
total=${#names[@]}
i=0
for n in "${names[@]}"; do
    i=$((i + 1))
    p=$mutants_dir/$n.patch
    g=$(header "$p" Guard)
    echo "mutate: [$i/$total] $n: $(header "$p" Mutant)" >&2
    # The files the patch touches, saved to be put back afterwards.
    files=$(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p")
    saved=$scratch/saved
    rm -rf "$saved"
    mkdir -p "$saved"
    for f in $files; do
        [ -f "$src/$f" ] || continue
        mkdir -p "$saved/$(dirname "$f")"
        cp -p "$src/$f" "$saved/$f"
    done
    result=
    if ! patch -d "$src" -p1 --fuzz=3 --forward --batch --dry-run <"$p" >"$log/$n.patch.log" 2>&1; then
        result="DOES NOT APPLY"
    else
        patch -d "$src" -p1 --fuzz=3 --forward --batch --no-backup-if-mismatch <"$p" \
            >>"$log/$n.patch.log" 2>&1
        if ! cmake --build "$build" -j"$jobs" >"$log/$n.build.log" 2>&1; then
            result="DOES NOT BUILD"
        elif [ "$(ctest --test-dir "$build" -N -R "$g" | sed -n 's/^Total Tests: //p')" = 0 ]; then
            result="NO TESTS"
        elif run_guard "$g" "$log/$n.test.log"; then
            result=SURVIVED
        else
            result=KILLED
        fi
    fi
    # Put the files back as they were: newer than the mutant, so the next
    # build recompiles them.
    for f in $files; do
        if [ -f "$saved/$f" ]; then
            cp "$saved/$f" "$src/$f"
            touch "$src/$f"
        else
            rm -f "$src/$f"
        fi
    done
    echo "$result $n"
    if [ "$result" = KILLED ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        case "$result" in
            SURVIVED) echo "mutate:   every test matching '$g' passed; see $log/$n.test.log" >&2 ;;
            "DOES NOT APPLY") sed 's/^/mutate:   /' "$log/$n.patch.log" >&2 ;;
            "DOES NOT BUILD") grep -m 5 'error' "$log/$n.build.log" | sed 's/^/mutate:   /' >&2 ;;
            "NO TESTS") echo "mutate:   no test matches '$g'" >&2 ;;
        esac
    fi
done

# Leave the scratch build as it was (no mutant in it) for a kept directory.
[ "${QSYNC_MUTATE_KEEP:-0}" = 1 ] && cmake --build "$build" -j"$jobs" >/dev/null 2>&1 || true

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
