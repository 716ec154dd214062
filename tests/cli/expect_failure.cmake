# cmake -DCMD="prog|arg|..." -DEXPECT=<regex> -P expect_failure.cmake
# Passes when the command exits non-zero and its output matches EXPECT (a clear error, not a crash:
# a signal or an uncaught exception would not print the expected message).
string(REPLACE "|" ";" cmd "${CMD}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "expected a failure, but the command exited 0:\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "exit ${rc}; output does not match '${EXPECT}':\n${out}${err}")
endif()
message(STATUS "failed as expected (exit ${rc}): ${err}")
