# cmake -DTINY=<pgolf-tiny> -DDIR=<run folder> -P sliding_eval.cmake
# Sliding-window evaluation end to end: `train --eval-stride 128` prints the records' final lines
# (the standard round trip, then the sliding-window score of the same artifact), and `eval` of that
# artifact with the same stride prints the same score to the last digit.
set(quick --val-tokens 4097 --train-batch-tokens 2048 --no-progress)
execute_process(COMMAND ${TINY} train --iterations 3 --val-loss-every 0 ${quick} --eval-stride 128 --out-dir ${DIR}
                        --run-id sliding --overwrite
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train --eval-stride failed (exit ${rc}):\n${out}${err}")
endif()
set(num "[0-9]+\\.[0-9]+")
foreach(expect
    "final_eval_mode:sliding_window stride:128 seq_len:256 batch_seqs:[0-9]+ \\(validation during training: standard\\)"
    "step:3/3 val_loss:${num} val_bpb:${num}"
    "final_prequant_sliding_window val_loss:${num} val_bpb:${num} stride:128 seq_len:256 eval_time:[0-9]+ms"
    "final_int8_zlib_roundtrip_exact val_loss:${num} val_bpb:${num}\nfinal_int8_zlib_sliding_window val_loss:${num} val_bpb:${num} stride:128 seq_len:256 eval_time:[0-9]+ms\nfinal_int8_zlib_sliding_window_exact val_loss:${num} val_bpb:${num}")
  if(NOT out MATCHES "${expect}")
    message(FATAL_ERROR "train output lacks '${expect}':\n${out}")
  endif()
endforeach()
string(REGEX MATCH "final_int8_zlib_sliding_window_exact val_loss:(${num}) val_bpb:(${num})" line "${out}")
set(train_loss ${CMAKE_MATCH_1})
set(train_bpb ${CMAKE_MATCH_2})

execute_process(COMMAND ${TINY} eval ${DIR}/model.pgolf --val-tokens 4097 --eval-stride 128
                RESULT_VARIABLE rc OUTPUT_VARIABLE eval_out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "eval --eval-stride failed (exit ${rc}):\n${eval_out}${err}")
endif()
if(NOT eval_out MATCHES "eval_mode:sliding_window stride:128 seq_len:256\n.*val_loss:(${num}) val_bpb:(${num}) tokens:4096 ")
  message(FATAL_ERROR "eval output lacks the sliding-window score of all 4096 tokens:\n${eval_out}")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL train_loss OR NOT CMAKE_MATCH_2 STREQUAL train_bpb)
  message(FATAL_ERROR "eval scores the artifact at val_loss:${CMAKE_MATCH_1} val_bpb:${CMAKE_MATCH_2}, train's round trip "
                      "printed val_loss:${train_loss} val_bpb:${train_bpb}")
endif()
message(STATUS "sliding window: val_loss:${train_loss} val_bpb:${train_bpb} in train and eval")

# A longer window than training (--eval-seq-len): the same artifact scored with 512-token windows, all
# 4096 tokens once; every window past the first sees more context, so the score is another number.
execute_process(COMMAND ${TINY} eval ${DIR}/model.pgolf --val-tokens 4097 --eval-stride 128 --eval-seq-len 512
                RESULT_VARIABLE rc OUTPUT_VARIABLE long_out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "eval --eval-seq-len 512 failed (exit ${rc}):\n${long_out}${err}")
endif()
if(NOT long_out MATCHES "eval_mode:sliding_window stride:128 seq_len:512\n.*val_loss:(${num}) val_bpb:(${num}) tokens:4096 ")
  message(FATAL_ERROR "eval --eval-seq-len 512 lacks the 512-token sliding-window score of all 4096 tokens:\n${long_out}")
endif()
if(CMAKE_MATCH_1 STREQUAL train_loss)
  message(FATAL_ERROR "eval --eval-seq-len 512 gives the 256-token window's loss ${train_loss}: the window was not used")
endif()
message(STATUS "window 512: val_loss:${CMAKE_MATCH_1} val_bpb:${CMAKE_MATCH_2}")
