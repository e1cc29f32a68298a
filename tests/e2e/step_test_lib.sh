# Shared by the qsync-step tests (qsync_step_test.sh,
# personalities_step_test.sh), sourced with the test's arguments in place:
#   QSYNC_STEP GUEST_ELF
# Sets step, guest, qemu ($QSYNC_TEST_QEMU or qemu-system-x86_64), work (a
# private directory removed at exit) and guest_args, and defines fail,
# json_get, expect_key, csv_max_overshoot and finish.
step=$1
guest=$2
qemu=${QSYNC_TEST_QEMU:-qemu-system-x86_64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# json_get FILE KEY: prints the value of a top-level key of qsync-step's JSON.
json_get() {
    sed -n "s/^  \"$2\": \(.*\)$/\1/p" "$1" | sed 's/,$//'
}

# expect_key FILE KEY VALUE WHAT: the JSON key holds exactly VALUE.
expect_key() {
    got=$(json_get "$1" "$2")
    [ "$got" = "$3" ] || fail "$4: \"$2\" is '$got', expected '$3'"
}

guest_args="-M pc -nodefaults -display none -serial stdio -no-reboot
 -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel $guest"

# csv_max_overshoot FILE: the largest virtual_ns - deadline_ns in a --csv
# file, which at shift 0 is a stop's overshoot in instructions (0 when no
# stop is past its deadline).
csv_max_overshoot() {
    awk -F, 'NR > 1 && $3 - $2 > max { max = $3 - $2 } END { print max + 0 }' "$1"
}

# finish NAME: exits 1 if any check failed, else says that NAME passed.
finish() {
    if [ $fails -ne 0 ]; then
        echo "$fails check(s) failed" >&2
        exit 1
    fi
    echo "$1: all checks passed"
}
