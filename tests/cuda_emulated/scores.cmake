# Helpers of the command-line checks under the CUDA emulation (cli_recipe.cmake, cli_nccl.cmake).

# run(<name> <output var> <command...>): runs it, fails the test with its output unless it exits 0.
function(run name out)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (exit ${rc}):\n${o}${e}")
  endif()
  set(${out} "${o}" PARENT_SCOPE)
endfunction()

# score(<text> <label> <var>): the val_loss of the line `<label> val_loss:X.XXXXXXXX` in text.
function(score text label var)
  if(NOT text MATCHES "${label} val_loss:([0-9]+\\.[0-9]+)")
    message(FATAL_ERROR "no '${label} val_loss:' line in:\n${text}")
  endif()
  set(${var} ${CMAKE_MATCH_1} PARENT_SCOPE)
endfunction()

# expect_close(<what> <a> <b> <per>): |a - b| <= a / per, for a, b printed with the same number of
# decimals (CMake has integers only: the digits are compared as integers).
function(expect_close what a b per)
  string(REPLACE "." "" ia "${a}")
  string(REPLACE "." "" ib "${b}")
  math(EXPR d "${ia} - ${ib}")
  if(d LESS 0)
    math(EXPR d "-${d}")
  endif()
  math(EXPR scaled "${d} * ${per}")
  if(scaled GREATER ia)
    message(FATAL_ERROR "${what}: ${a} against ${b}, more than 1/${per} apart")
  endif()
  message(STATUS "${what}: ${a} against ${b}")
endfunction()
