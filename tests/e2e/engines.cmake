# The plugin's engines (timer, insn, auto) end to end: real QEMU, the real
# plugin, the project's guest. Included from tests/e2e/CMakeLists.txt.
qsync_e2e_executable(test_engines ${CMAKE_CURRENT_LIST_DIR}/test_engines.c)
add_test(NAME e2e.engines COMMAND test_engines)
set_tests_properties(e2e.engines PROPERTIES TIMEOUT 300 LABELS e2e)
# The same suite on each channel (the plain entry runs the default).
foreach(_ch pipe shm)
  add_test(NAME e2e.engines.${_ch} COMMAND test_engines)
  set_tests_properties(e2e.engines.${_ch} PROPERTIES TIMEOUT 300 LABELS e2e
    ENVIRONMENT QSYNC_TEST_CHANNEL=${_ch})
endforeach()
