# cmake -DTINY=<pgolf-tiny> -DDIR=<scratch folder> -P end_phase_resume.cmake
# A run killed during its end phase (late replay, self-distillation) leaves its periodic checkpoints
# and logs but no checkpoint.bin or model.pgolf. Such a folder, resumed with the same --iterations,
# runs the end phase from the last step's checkpoint (written before that phase even though the
# period of 4 skips step 6) and ends with the artifact of the run that was never interrupted, bit
# for bit. The finished run itself has nothing left: its resume is refused, naming the step.
set(flags --val-tokens 4097 --train-batch-tokens 2048 --no-progress --val-loss-every 0 --iterations 6
          --checkpoint-every 4 --keep-checkpoints 5 --max-wallclock-seconds 0 --warmdown-iters 4 --ema-decay 0.9
          --replay-batches 2 --replay-threshold 0.9 --distill-steps 2)
file(REMOVE_RECURSE "${DIR}")

execute_process(COMMAND ${TINY} train ${flags} --out-dir ${DIR}/whole RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "replay:done steps:[1-9].*distill:done steps:2/2")
  message(FATAL_ERROR "uninterrupted run (${rc}):\n${out}${err}")
endif()
foreach(f checkpoints/step_00000004.bin checkpoints/step_00000006.bin checkpoint.bin model.pgolf)
  if(NOT EXISTS "${DIR}/whole/${f}")
    message(FATAL_ERROR "the run did not write ${f}")
  endif()
endforeach()

# What a kill during the end phase leaves behind.
file(COPY "${DIR}/whole/" DESTINATION "${DIR}/killed")
file(REMOVE "${DIR}/killed/checkpoint.bin" "${DIR}/killed/model.pgolf")
execute_process(COMMAND ${TINY} train ${flags} --out-dir ${DIR}/killed --resume latest
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "resumed:.*step_00000006.bin step:6 .*before the end phase.*replay:done.*distill:done steps:2/2.*step:6/6 val_loss")
  message(FATAL_ERROR "resume into the end phase (${rc}):\n${out}${err}")
endif()
file(SHA256 "${DIR}/whole/model.pgolf" a)
file(SHA256 "${DIR}/killed/model.pgolf" b)
if(NOT a STREQUAL b)
  message(FATAL_ERROR "the run resumed into its end phase exported other weights than the uninterrupted run")
endif()

# The finished run: its latest checkpoint is the final one, whose end phase has run.
execute_process(COMMAND ${TINY} train ${flags} --out-dir ${DIR}/whole --resume latest
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "checkpoint.bin is at step 6 and --iterations is 6: nothing left to train")
  message(FATAL_ERROR "resuming the finished run should be refused (${rc}):\n${out}${err}")
endif()
message(STATUS "killed during the end phase, resumed from step 6: artifact identical (${a})")
