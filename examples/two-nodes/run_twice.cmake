# The test of examples/two-nodes: runs the example twice and fails unless
# both runs pass, every frame is reported exact, and the two transcripts are
# identical byte for byte.
#   cmake -DPROGRAM=... -DQEMU=... -DGUEST=... -P run_twice.cmake
foreach(_v PROGRAM QEMU GUEST)
  if(NOT ${_v})
    message(FATAL_ERROR "run_twice.cmake: -D${_v}= is required")
  endif()
endforeach()

set(_count 8)
foreach(_run 1 2)
  execute_process(
    COMMAND ${PROGRAM} ${QEMU} ${GUEST} --count ${_count} --quantum-us 10 --latency-us 25
    OUTPUT_VARIABLE _out${_run} ERROR_VARIABLE _err RESULT_VARIABLE _rc)
  message("---- run ${_run}\n${_out${_run}}${_err}")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "run ${_run} failed (exit status ${_rc})")
  endif()
endforeach()

foreach(_re
    "qsync-two-nodes: ${_count} frames sent, ${_count} delivered at exactly send \\+ 25000 ns, ${_count} received"
    "B got #1 at [0-9]+ ns by its own clock"
    "B got #${_count} at [0-9]+ ns by its own clock"
    "PASS: every frame reached B at its send time plus the link latency")
  if(NOT _out1 MATCHES "${_re}")
    message(FATAL_ERROR "the output does not match: ${_re}")
  endif()
endforeach()
if(_out1 MATCHES "LATE|NOT at|FAIL|outside the lookahead")
  message(FATAL_ERROR "a frame was not delivered on time")
endif()
if(NOT _out1 STREQUAL _out2)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/two-nodes-run1.txt "${_out1}")
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/two-nodes-run2.txt "${_out2}")
  message(FATAL_ERROR "the two transcripts differ (two-nodes-run1.txt, two-nodes-run2.txt)")
endif()
message("the two transcripts are identical")
