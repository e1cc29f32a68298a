#!/bin/sh
# Installs the build into a private prefix, then builds a program outside
# the tree against it twice: through pkg-config and through
# The C++ header compiles on its own, strictly, from the installed tree.
if command -v c++ >/dev/null 2>&1; then
    printf '#include <qsync/qsync.hpp>\nint main() { qsync::Loop loop; qsync::Group g; return (int)g.size(); }\n' \
        >"$work/hpp.cpp"
    # shellcheck disable=SC2046
    c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -o "$work/hpp" "$work/hpp.cpp" \
        $(pkg-config --cflags --libs qsync)
    LD_LIBRARY_PATH="$prefix/lib" "$work/hpp"
else
    echo "install: no C++ compiler; qsync.hpp not checked"
fi

# find_package(qsync). Both programs must step a real guest.
# usage: install_test.sh BUILD_DIR SOURCE_DIR GUEST_ELF
set -eu
build=$1
src=$2
guest=$3
qemu=${QSYNC_TEST_QEMU:-qemu-system-x86_64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/qsync/qsync.h include/qsync/qsync.hpp include/qsync/version.h bin/qsync-step \
    lib/libqsync.a lib/qsync/libqsync-plugin.so lib/pkgconfig/qsync.pc \
    lib/cmake/qsync/qsyncConfig.cmake lib/cmake/qsync/qsyncConfigVersion.cmake; do
    [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
soname=$(objdump -p "$prefix/lib/libqsync.so" | awk '/SONAME/ { print $2 }')
case "$soname" in
    libqsync.so.[0-9]*) ;;
    *) echo "FAIL: SONAME is '$soname'" >&2; exit 1 ;;
esac
[ -e "$prefix/lib/$soname" ] || { echo "FAIL: $soname not installed" >&2; exit 1; }

# pkg-config
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
grep -q '^Requires: libuv' "$prefix/lib/pkgconfig/qsync.pc"
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$work/consumer-pc" \
    "$src/tests/install/consumer/main.c" $(pkg-config --cflags --libs qsync)
LD_LIBRARY_PATH="$prefix/lib" "$work/consumer-pc" "$qemu" "$guest"

# libqsync-ns3, when ns-3 was found: its header, library and .pc file.
if [ -e "$prefix/lib/pkgconfig/qsync-ns3.pc" ]; then
    printf '#include <qsync/ns3/qemu-net-device.h>\nint main() { return ns3::QemuNetDevice::CheckTiming(ns3::MicroSeconds(10), ns3::MicroSeconds(5)).empty(); }\n' \
        >"$work/ns3.cpp"
    # shellcheck disable=SC2046
    c++ -std=c++17 -Wall -Wextra -Werror -o "$work/ns3" "$work/ns3.cpp" \
        $(pkg-config --cflags --libs qsync-ns3)
    LD_LIBRARY_PATH="$prefix/lib" "$work/ns3" || { echo "FAIL: libqsync-ns3 accepted 5 us < 10 us" >&2; exit 1; }
    [ -e "$prefix/bin/qsync-ns3" ] || { echo "FAIL: qsync-ns3 not installed" >&2; exit 1; }
    # find_package(qsync COMPONENTS ns3) gives qsync::ns3.
    mkdir "$work/ns3cm"
    cp "$work/ns3.cpp" "$work/ns3cm/ns3.cpp"
    printf '%s\n' 'cmake_minimum_required(VERSION 3.18)' 'project(ns3c LANGUAGES CXX)' \
        'find_package(qsync REQUIRED COMPONENTS ns3)' 'add_executable(ns3c ns3.cpp)' \
        'set_target_properties(ns3c PROPERTIES CXX_STANDARD 17)' \
        'target_link_libraries(ns3c PRIVATE qsync::ns3)' >"$work/ns3cm/CMakeLists.txt"
    { cmake -S "$work/ns3cm" -B "$work/ns3cm/b" -DCMAKE_PREFIX_PATH="$prefix" &&
        cmake --build "$work/ns3cm/b"; } >"$work/ns3cm.log" 2>&1 ||
        { cat "$work/ns3cm.log" >&2; echo "FAIL: find_package(qsync COMPONENTS ns3)" >&2; exit 1; }
    LD_LIBRARY_PATH="$prefix/lib" "$work/ns3cm/b/ns3c" ||
        { echo "FAIL: qsync::ns3 accepted 5 us < 10 us" >&2; exit 1; }
else
    echo "install: libqsync-ns3 was not built (no ns-3); not checked"
fi

# libqsync-mpi, when MPI was found: its header, library and .pc file;
# without it, no mpi.h either.
if [ -e "$prefix/lib/pkgconfig/qsync-mpi.pc" ]; then
    printf '#include <qsync/mpi.h>\nint main(void) { qsync_mpi_config c; qsync_mpi_config_init(&c); return c.window_ns != 0; }\n' \
        >"$work/mpi.c"
    # shellcheck disable=SC2046
    cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$work/mpi" "$work/mpi.c" \
        $(pkg-config --cflags --libs qsync-mpi)
    LD_LIBRARY_PATH="$prefix/lib" "$work/mpi" || { echo "FAIL: libqsync-mpi's defaults" >&2; exit 1; }
    # find_package(qsync COMPONENTS mpi) gives qsync::mpi.
    mkdir "$work/mpicm"
    cp "$work/mpi.c" "$work/mpicm/mpi.c"
    printf '%s\n' 'cmake_minimum_required(VERSION 3.18)' 'project(mpic LANGUAGES C)' \
        'find_package(qsync REQUIRED COMPONENTS mpi)' 'add_executable(mpic mpi.c)' \
        'target_link_libraries(mpic PRIVATE qsync::mpi)' >"$work/mpicm/CMakeLists.txt"
    { cmake -S "$work/mpicm" -B "$work/mpicm/b" -DCMAKE_PREFIX_PATH="$prefix" &&
        cmake --build "$work/mpicm/b"; } >"$work/mpicm.log" 2>&1 ||
        { cat "$work/mpicm.log" >&2; echo "FAIL: find_package(qsync COMPONENTS mpi)" >&2; exit 1; }
    LD_LIBRARY_PATH="$prefix/lib" "$work/mpicm/b/mpic" || { echo "FAIL: qsync::mpi" >&2; exit 1; }
else
    [ ! -e "$prefix/include/qsync/mpi.h" ] || { echo "FAIL: mpi.h installed without libqsync-mpi" >&2; exit 1; }
    echo "install: libqsync-mpi was not built (no MPI); not checked"
fi

# find_package
cmake -S "$src/tests/install/consumer" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="-D_GNU_SOURCE -Wall -Wextra -Werror" >"$work/cm.log"
cmake --build "$work/cm" >>"$work/cm.log"
"$work/cm/consumer" "$qemu" "$guest"

# The installed qsync-step finds the installed plugin by itself.
"$prefix/bin/qsync-step" --quantum 10us --until 100us --json "$work/s.json" -- \
    "$qemu" -M pc -nodefaults -display none -kernel "$guest" -append "compute 100000000"
grep -q '"quanta": 10,' "$work/s.json"

# A tree configured for one prefix and another library directory (lib64),
# then installed under a different prefix: the installed qsync-step, and a
# program linked statically and installed in its bin/, find the plugin
# relative to themselves; a static program outside the tree is told where
# the library looked, and finds it through $QSYNC_PLUGIN.
b64=$work/b64
p64=$work/p64
{
    cmake -S "$src" -B "$b64" -DCMAKE_INSTALL_PREFIX=/nonexistent/qsync \
        -DCMAKE_INSTALL_LIBDIR=lib64 -DQSYNC_BUILD_TESTS=OFF -DQSYNC_BUILD_EXAMPLES=OFF &&
        cmake --build "$b64" -j"$(nproc)" && cmake --install "$b64" --prefix "$p64"
} >"$work/b64.log" 2>&1 || { cat "$work/b64.log" >&2; echo "FAIL: the lib64 build" >&2; exit 1; }
[ -e "$p64/lib64/qsync/libqsync-plugin.so" ] || { echo "FAIL: no lib64/qsync/ plugin" >&2; exit 1; }
"$p64/bin/qsync-step" --quantum 10us --until 100us --json "$work/s64.json" -- \
    "$qemu" -M pc -nodefaults -display none -kernel "$guest" -append "compute 100000000"
grep -q '"quanta": 10,' "$work/s64.json"
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$p64/bin/consumer-static" \
    "$src/tests/install/consumer/main.c" -I"$p64/include" "$p64/lib64/libqsync.a" \
    $(pkg-config --libs libuv) -lpthread -ldl
"$p64/bin/consumer-static" "$qemu" "$guest"
mkdir "$work/elsewhere"
cp "$p64/bin/consumer-static" "$work/elsewhere/"
if "$work/elsewhere/consumer-static" "$qemu" "$guest" >"$work/elsewhere.out" 2>&1; then
    echo "FAIL: a static program outside the tree found a plugin" >&2; exit 1
fi
grep -q "looked at .*/nonexistent/qsync/lib64/qsync/libqsync-plugin.so" "$work/elsewhere.out" || {
    echo "FAIL: the message does not say where it looked: $(cat "$work/elsewhere.out")" >&2; exit 1; }
QSYNC_PLUGIN="$p64/lib64/qsync/libqsync-plugin.so" "$work/elsewhere/consumer-static" "$qemu" "$guest"
echo "install: all checks passed"
