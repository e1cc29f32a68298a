# The plugin's qqq and FIFO personalities end to end: real QEMU, the real
# plugin, the project's guest, driven by controllers written from the
# protocols' own descriptions, by the library, and by qsync-step. Included from
# tests/e2e/CMakeLists.txt.
qsync_e2e_executable(test_personalities ${CMAKE_CURRENT_LIST_DIR}/test_personalities.c)
add_test(NAME e2e.personalities COMMAND test_personalities)
set_tests_properties(e2e.personalities PROPERTIES TIMEOUT 300 LABELS e2e)

add_test(NAME e2e.personalities.qsync-step
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/personalities_step_test.sh
          $<TARGET_FILE:qsync-step> ${QSYNC_GUEST_ELF})
set_tests_properties(e2e.personalities.qsync-step PROPERTIES TIMEOUT 300 LABELS e2e)

# The same suite against Debian bookworm's QEMU 7.2 (plugin API 1;
# cmake/Qemu72.cmake): the insn engine's tests are skipped there.
include(${PROJECT_SOURCE_DIR}/cmake/Qemu72.cmake)
add_test(NAME e2e.personalities.qemu72 COMMAND test_personalities)
set_tests_properties(e2e.personalities.qemu72 PROPERTIES TIMEOUT 300 LABELS e2e)
qsync_qemu72_tests(e2e.personalities.qemu72)
