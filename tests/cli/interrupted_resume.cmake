# cmake -DTINY=<pgolf-tiny> -DDIR=<scratch folder> -P interrupted_resume.cmake
# A run killed (SIGKILL) while writing its step-4 checkpoint keeps its step-2 one loadable; resumed
# with --resume latest it removes the stale temp file and finishes with the same weights, bit for
# bit, as the run that was never interrupted (compared through the artifacts, which hold only them).
set(quick --val-tokens 4097 --train-batch-tokens 2048 --no-progress --val-loss-every 0 --iterations 6
          --checkpoint-every 2)
file(REMOVE_RECURSE "${DIR}")

execute_process(COMMAND ${TINY} train ${quick} --out-dir ${DIR}/whole RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "uninterrupted run failed (${rc}):\n${out}${err}")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -E env PGOLF_TEST_KILL_DURING_CHECKPOINT=4 ${TINY} train ${quick}
                        --out-dir ${DIR}/killed RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "the run with the injected kill exited 0:\n${out}${err}")
endif()
foreach(f checkpoints/step_00000002.bin checkpoints/step_00000004.bin.tmp)
  if(NOT EXISTS "${DIR}/killed/${f}")
    message(FATAL_ERROR "after the kill, ${f} should exist")
  endif()
endforeach()
if(EXISTS "${DIR}/killed/checkpoints/step_00000004.bin" OR EXISTS "${DIR}/killed/checkpoint.bin")
  message(FATAL_ERROR "the killed write must not leave a checkpoint under its final name")
endif()

execute_process(COMMAND ${TINY} eval ${DIR}/killed/checkpoints/step_00000002.bin --val-tokens 4097
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "val_loss:[0-9.]+ val_bpb:[0-9.]+")
  message(FATAL_ERROR "the previous checkpoint does not load (${rc}):\n${out}${err}")
endif()

execute_process(COMMAND ${TINY} train ${quick} --out-dir ${DIR}/killed --resume latest
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "removed stale temp file.*step_00000004.bin.tmp.*resumed:.*step_00000002.bin step:2 .*step:6/6 val_loss")
  message(FATAL_ERROR "resume after the kill (${rc}):\n${out}${err}")
endif()
file(SHA256 "${DIR}/whole/model.pgolf" a)
file(SHA256 "${DIR}/killed/model.pgolf" b)
if(NOT a STREQUAL b)
  message(FATAL_ERROR "the resumed run's weights differ from the uninterrupted run's")
endif()
message(STATUS "interrupted at step 4, resumed from step 2: artifact identical (${a})")
