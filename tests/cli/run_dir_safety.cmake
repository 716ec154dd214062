# cmake -DTINY=<pgolf-tiny> -DDIR=<scratch folder> -P run_dir_safety.cmake
# A finished run's folder is never overwritten by accident, and resumes that have nothing left to
# do say so: each refused command must fail with its message and leave the artifact untouched.
set(quick --val-tokens 4097 --train-batch-tokens 2048 --no-progress --val-loss-every 0)
file(REMOVE_RECURSE "${DIR}" "${DIR}-other")

function(run expect_rc expect_regex)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(expect_rc STREQUAL "ok" AND NOT rc EQUAL 0)
    message(FATAL_ERROR "expected success, got exit ${rc}: ${ARGN}\n${out}${err}")
  endif()
  if(expect_rc STREQUAL "fail" AND rc EQUAL 0)
    message(FATAL_ERROR "expected a failure, but it exited 0: ${ARGN}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${expect_regex}")
    message(FATAL_ERROR "exit ${rc}; output does not match '${expect_regex}': ${ARGN}\n${out}${err}")
  endif()
  message(STATUS "as expected (exit ${rc}): ${ARGN}")
endfunction()

run(ok "step:2/2 val_loss" ${TINY} train --iterations 2 --checkpoint-every 1 ${quick} --out-dir ${DIR})
file(SHA256 "${DIR}/model.pgolf" artifact)

# A new run into the finished run's folder.
run(fail "--out-dir .* is not empty .*refusing to overwrite it" ${TINY} train --iterations 2 ${quick} --out-dir ${DIR})
# Resumes with nothing left to train (at and below the checkpoint's step).
run(fail "is at step 2 and --iterations is 2: nothing left to train"
    ${TINY} train --resume ${DIR}/checkpoint.bin --iterations 2 ${quick} --out-dir ${DIR})
run(fail "is at step 2 and --iterations is 1: nothing left to train"
    ${TINY} train --resume latest --iterations 1 ${quick} --out-dir ${DIR})
# --resume latest in a folder without checkpoints.
run(fail "--resume latest: no checkpoint of this model in" ${TINY} train --resume latest --iterations 3 ${quick}
    --out-dir ${DIR}/empty)
# Resuming another folder's checkpoint into a non-empty folder is a new run there: refused.
file(WRITE "${DIR}-other/notes.txt" "mine")
run(fail "is not empty" ${TINY} train --resume ${DIR}/checkpoint.bin --iterations 3 ${quick} --out-dir ${DIR}-other)
# export over an existing artifact.
run(fail "artifact .*model.pgolf exists; refusing to replace it" ${TINY} export ${DIR}/checkpoint.bin
    -o ${DIR}/model.pgolf --val-tokens 4097)
file(SHA256 "${DIR}/model.pgolf" after)
if(NOT after STREQUAL artifact)
  message(FATAL_ERROR "a refused command changed ${DIR}/model.pgolf")
endif()

# The run continues in its own folder; the newest 2 periodic checkpoints are kept.
run(ok "resumed:.*checkpoint.bin step:2 .*step:3/3 val_loss" ${TINY} train --resume latest --iterations 3
    --checkpoint-every 1 ${quick} --out-dir ${DIR})
file(GLOB kept RELATIVE "${DIR}/checkpoints" "${DIR}/checkpoints/*")
list(SORT kept)
if(NOT kept STREQUAL "step_00000002.bin;step_00000003.bin")
  message(FATAL_ERROR "expected the newest two periodic checkpoints, found: ${kept}")
endif()
# --overwrite replaces the run files (and only those).
file(WRITE "${DIR}/notes.txt" "mine")
run(ok "overwrite: removed [0-9]+ run files.*step:1/1 val_loss" ${TINY} train --iterations 1 ${quick} --out-dir ${DIR} --overwrite)
if(NOT EXISTS "${DIR}/notes.txt" OR EXISTS "${DIR}/checkpoints/step_00000003.bin")
  message(FATAL_ERROR "--overwrite must remove the earlier run's files and nothing else")
endif()
