# cmake -DTINY=<pgolf-tiny> -DDIR=<scratch folder> -P end_phase_resume.cmake
# A run killed during its end phase (late replay, self-distillation) leaves its periodic checkpoints
# and logs but no checkpoint.bin or model.pgolf. Such a folder, resumed with the same --iterations,
# ends with the artifact of the run that was never interrupted, bit for bit, from each checkpoint it
# may have left: the last step's, written before the phase (even though the period of 4 skips step
# 6), one after replay's 4 micro-batch steps (end step 4) and one inside distillation (end step 8,
# which holds the teacher). The finished run itself has nothing left: its resume is refused.
set(flags --val-tokens 4097 --train-batch-tokens 2048 --no-progress --val-loss-every 0 --iterations 6
          --checkpoint-every 4 --keep-checkpoints 5 --max-wallclock-seconds 0 --warmdown-iters 4 --ema-decay 0.9
          --replay-batches 2 --replay-threshold 0.9 --distill-steps 5 --train-log-every 1)
file(REMOVE_RECURSE "${DIR}")

execute_process(COMMAND ${TINY} train ${flags} --out-dir ${DIR}/whole RESULT_VARIABLE rc OUTPUT_VARIABLE whole ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT whole MATCHES "replay:done steps:4/4.*distill:done steps:5/5")
  message(FATAL_ERROR "uninterrupted run (${rc}):\n${whole}${err}")
endif()
foreach(f checkpoints/step_00000004.bin checkpoints/step_00000006.bin checkpoints/step_00000006_end_00000004.bin
          checkpoints/step_00000006_end_00000008.bin checkpoint.bin model.pgolf)
  if(NOT EXISTS "${DIR}/whole/${f}")
    message(FATAL_ERROR "the run did not write ${f}")
  endif()
endforeach()
file(SHA256 "${DIR}/whole/model.pgolf" a)
string(REGEX MATCH "distill:step 5/5 loss:[0-9.]+" last_distill "${whole}")
string(REGEX MATCH "step:6/6 val_loss:[0-9.]+ val_bpb:[0-9.]+" final_val "${whole}")

# What a kill during the end phase leaves behind: the newest checkpoint is the one resumed.
#   name      end-phase files kept   the resume must say
set(cases "before|step_00000006.bin step:6 .*before the end phase.*replay:done steps:4/4"
          "replayed|step_00000006_end_00000004.bin step:6 .*4 steps into the end phase.*distill:done steps:5/5"
          "distilling|step_00000006_end_00000008.bin step:6 .*8 steps into the end phase.*distill:done steps:5/5 .*resumed after 4")
foreach(case IN LISTS cases)
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts 1 expect)
  file(COPY "${DIR}/whole/" DESTINATION "${DIR}/${name}")
  file(REMOVE "${DIR}/${name}/checkpoint.bin" "${DIR}/${name}/model.pgolf")
  if(name STREQUAL "before")
    file(REMOVE "${DIR}/${name}/checkpoints/step_00000006_end_00000004.bin" "${DIR}/${name}/checkpoints/step_00000006_end_00000008.bin")
  elseif(name STREQUAL "replayed")
    file(REMOVE "${DIR}/${name}/checkpoints/step_00000006_end_00000008.bin")
  endif()
  execute_process(COMMAND ${TINY} train ${flags} --out-dir ${DIR}/${name} --resume latest
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "resumed:.*${expect}")
    message(FATAL_ERROR "resume into the end phase, ${name} (${rc}):\n${out}${err}")
  endif()
  string(FIND "${out}" "${last_distill}" at_distill)
  string(FIND "${out}" "${final_val}" at_val)
  if(at_distill EQUAL -1 OR at_val EQUAL -1)
    message(FATAL_ERROR "resumed ${name}: the last distillation step or the final score differs from the run "
                        "never interrupted ('${last_distill}', '${final_val}'):\n${out}")
  endif()
  file(SHA256 "${DIR}/${name}/model.pgolf" b)
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "the run resumed into its end phase (${name}) exported other weights than the uninterrupted run")
  endif()
endforeach()

# The finished run: its latest checkpoint is the final one, whose end phase has run.
execute_process(COMMAND ${TINY} train ${flags} --out-dir ${DIR}/whole --resume latest
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "checkpoint.bin is at step 6 and --iterations is 6: nothing left to train")
  message(FATAL_ERROR "resuming the finished run should be refused (${rc}):\n${out}${err}")
endif()
message(STATUS "killed before, after replay and inside distillation, resumed: artifact identical (${a})")
