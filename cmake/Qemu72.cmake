# QEMU 7.2 for the tests: Debian bookworm's build, fetched into the build
# tree by scripts/fetch-qemu72.sh (apt-get download + dpkg -x; it is never
# installed over the system's QEMU 10.0.2).
#
#   include(${PROJECT_SOURCE_DIR}/cmake/Qemu72.cmake)
#
# defines:
#   QSYNC_QEMU72        the wrapper that runs it as a drop-in
#                       qemu-system-x86_64 (known at configure time; it
#                       exists once fetched)
#   target qemu72       fetches it at build time. Not part of ALL: it needs
#                       the network, and a build must not.
#   test qemu72.fetch   the same fetch as the setup of the ctest fixture
#                       "qemu72", so `ctest` alone gets it when needed
#   qsync_qemu72_tests(TEST...)
#                       makes the tests require that fixture and run with
#                       QSYNC_TEST_QEMU=${QSYNC_QEMU72}
#
# Without the network the fetch fails with a message saying why, and ctest
# reports every test that requires it as not run, which fails the run: a
# QEMU 7.2 test is never skipped silently.

# The paths are set in every directory that includes this file; the target,
# the fetch test and the function only once.
set(QSYNC_QEMU72_DIR ${PROJECT_BINARY_DIR}/qemu-7.2)
set(QSYNC_QEMU72 ${QSYNC_QEMU72_DIR}/qemu-system-x86_64-7.2)
include_guard(GLOBAL)
set(_qsync_fetch_qemu72 ${PROJECT_SOURCE_DIR}/scripts/fetch-qemu72.sh)

# The script returns at once when the tree is already there and works, so
# the target can always run.
add_custom_target(qemu72
  COMMAND ${_qsync_fetch_qemu72} ${QSYNC_QEMU72_DIR}
  COMMENT "QEMU 7.2 in ${QSYNC_QEMU72_DIR}"
  VERBATIM
  USES_TERMINAL)

add_test(NAME qemu72.fetch COMMAND ${_qsync_fetch_qemu72} ${QSYNC_QEMU72_DIR})
set_tests_properties(qemu72.fetch PROPERTIES
  FIXTURES_SETUP qemu72
  TIMEOUT 600
  LABELS qemu72)

function(qsync_qemu72_tests)
  foreach(_test IN LISTS ARGN)
    set_property(TEST ${_test} APPEND PROPERTY FIXTURES_REQUIRED qemu72)
    set_property(TEST ${_test} APPEND PROPERTY ENVIRONMENT "QSYNC_TEST_QEMU=${QSYNC_QEMU72}")
    set_property(TEST ${_test} APPEND PROPERTY LABELS qemu72)
  endforeach()
endfunction()
