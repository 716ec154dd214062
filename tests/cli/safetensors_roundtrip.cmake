# safetensors through the command line, with pgolf-tiny and a trained checkpoint:
#   export CHECKPOINT --format safetensors -o model.safetensors   (refuses to replace it without --overwrite)
#   eval model.safetensors                                        (the checkpoint's val_loss, digit for digit)
#   import model.safetensors -o imported.bin                      (scored: the same val_loss again)
#   eval imported.bin                                             (the same)
# Arguments: -DTINY=<pgolf-tiny> -DCHECKPOINT=<a pgolf-tiny checkpoint> -DDIR=<scratch folder>.
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")
set(val --val-tokens 4097)

# run(<pass|fail> <regex> <command...>): the output of a passing command lands in `last`.
function(run expect regex)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(expect STREQUAL "pass" AND NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}${err}")
  endif()
  if(expect STREQUAL "fail" AND rc EQUAL 0)
    message(FATAL_ERROR "expected a failure: ${ARGN}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "output does not match '${regex}': ${ARGN}\n${out}${err}")
  endif()
  set(last "${out}${err}" PARENT_SCOPE)
endfunction()

function(val_loss_of text var)
  if(NOT text MATCHES "val_loss:([0-9.]+) val_bpb:([0-9.]+)")
    message(FATAL_ERROR "no val_loss line in:\n${text}")
  endif()
  set(${var} "${CMAKE_MATCH_1} ${CMAKE_MATCH_2}" PARENT_SCOPE)
endfunction()

run(pass "val_loss" ${TINY} eval ${CHECKPOINT} ${val})
val_loss_of("${last}" reference)

set(st ${DIR}/model.safetensors)
run(pass "safetensors: .*model.safetensors bytes:[0-9]+ tensors:[0-9]+ dtype:F32 naming:reference \\(reference_gpt\\)"
    ${TINY} export ${CHECKPOINT} --format safetensors -o ${st} ${val})
run(fail "safetensors file .*model.safetensors exists; refusing to replace it"
    ${TINY} export ${CHECKPOINT} --format safetensors -o ${st} ${val})
run(pass "safetensors: " ${TINY} export ${CHECKPOINT} --format safetensors -o ${st} --overwrite ${val})

run(pass "safetensors:.*model.safetensors tensors:[0-9]+ dtypes:F32=[0-9]+ naming:reference" ${TINY} eval ${st} ${val})
val_loss_of("${last}" from_safetensors)

set(ck ${DIR}/imported.bin)
run(pass "checkpoint: .*imported.bin" ${TINY} import ${st} -o ${ck} ${val})
val_loss_of("${last}" imported)
run(fail "checkpoint .*imported.bin exists; refusing to replace it" ${TINY} import ${st} -o ${ck} ${val})
run(pass "val_loss" ${TINY} eval ${ck} ${val})
val_loss_of("${last}" from_imported)

foreach(v from_safetensors imported from_imported)
  if(NOT "${${v}}" STREQUAL "${reference}")
    message(FATAL_ERROR "${v}: val_loss/val_bpb ${${v}}, the checkpoint's are ${reference}")
  endif()
endforeach()
# The imported checkpoint is a full state at step 0: training resumes from it.
run(pass "resumed:.*imported.bin step:0 .*step:1/1 val_loss" ${TINY} train --resume ${ck} --iterations 1 --val-loss-every 0
    --train-batch-tokens 2048 --no-progress --out-dir ${DIR}/resumed ${val})
message(STATUS "checkpoint, safetensors, import: val_loss val_bpb ${reference} throughout")
