# cmake -DCPU=<pgolf-tiny> -DEMU=<pgolf-tiny-emulated> -DDIR=<scratch> [-DBUILD=<verify build folder>]
#       [-DNO_SUBMIT=ON] -P cli_recipe.cmake
# The records' recipe through the command line's CUDA path, on the CPU under the CUDA emulation:
# `train --device cuda` with EMA, late QAT, GPTQ int6 (Hessians on the device), LZMA and
# sliding-window scores, against the same command on the CPU backend; then `eval --device cuda`
# of its artifact, `export --device cuda` of its checkpoint and a resume on the device from the
# step-3 checkpoint (each the run's artifact, bit for bit), and `submit` + `verify` of the device
# run (verify scores on the CPU: the cross-device tolerance). BUILD: a folder where
# `verify --build-dir` built pgolf-tiny's packed code (reused). On a GPU machine (scripts/device-check's
# step recipe) EMU is the real CUDA binary, and NO_SUBMIT skips submit + verify, which need the
# build machine's compilers and libraries.
include(${CMAKE_CURRENT_LIST_DIR}/scores.cmake)
set(recipe train --iterations 6 --val-loss-every 0 --val-tokens 4097 --train-batch-tokens 2048 --no-progress
           --max-wallclock-seconds 0 --warmdown-iters 4 --ema-decay 0.9 --qat-threshold 0.5 --quant gptq
           --quant-min-numel 4096 --gptq-calib-batches 2 --compressor lzma --eval-stride 128 --checkpoint-every 3)
file(REMOVE_RECURSE "${DIR}")

# --device cpu: the default (auto) picks the GPU where there is one.
run("the CPU run" cpu ${CPU} ${recipe} --device cpu --out-dir ${DIR}/cpu)
run("the CUDA run" gpu ${EMU} ${recipe} --device cuda --out-dir ${DIR}/cuda)
foreach(expect "device:cuda" "qat:on step:4 bits:6" "weights:ema decay:0.9"
               "gptq: calibrated 24 tensors on 2 training micro-batches \\(GPU\\)" "Serialized model int6\\+lzma: [0-9]+ bytes")
  if(NOT gpu MATCHES "${expect}")
    message(FATAL_ERROR "the CUDA run's output lacks '${expect}':\n${gpu}")
  endif()
endforeach()
# bf16 products against float32: the scores agree to 1e-3 (relative; 1.4e-4 when written).
foreach(label "step:6/6" final_prequant_sliding_window_exact final_int6_lzma_roundtrip_exact
              final_int6_lzma_sliding_window_exact)
  score("${cpu}" ${label} c)
  score("${gpu}" ${label} g)
  expect_close("${label} (CPU, CUDA)" ${c} ${g} 1000)
endforeach()
score("${gpu}" final_int6_lzma_sliding_window_exact trained)

# The artifact scored again on the device: the train line's digits.
run("eval --device cuda" out ${EMU} eval ${DIR}/cuda/model.pgolf --device cuda --val-tokens 4097 --eval-stride 128)
if(NOT out MATCHES "eval_mode:sliding_window stride:128 seq_len:256\n.*val_loss:${trained} val_bpb:[0-9.]+ tokens:4096 ")
  message(FATAL_ERROR "eval --device cuda does not repeat the run's val_loss:${trained}:\n${out}")
endif()

# Exported again from the run's checkpoint on the device, with the run's quantiser flags: GPTQ's
# Hessians come from the same micro-batches, so the artifact is the run's, bit for bit.
run("export --device cuda" out ${EMU} export ${DIR}/cuda/checkpoint.bin -o ${DIR}/cuda/exported.pgolf --device cuda
    --quant gptq --quant-min-numel 4096 --gptq-calib-batches 2 --compressor lzma --val-tokens 4097
    --train-batch-tokens 2048)
file(SHA256 ${DIR}/cuda/model.pgolf run_sha)
file(SHA256 ${DIR}/cuda/exported.pgolf exported_sha)
if(NOT run_sha STREQUAL exported_sha)
  message(FATAL_ERROR "export --device cuda of the run's checkpoint wrote another artifact than the run:\n${out}")
endif()

# Resumed on the device from step 3 (before QAT switches on): EMA, QAT, optimizer and data state
# come back from the checkpoint, so the artifact is the uninterrupted run's.
run("the resumed CUDA run" out ${EMU} ${recipe} --device cuda --out-dir ${DIR}/resumed
    --resume ${DIR}/cuda/checkpoints/step_00000003.bin)
if(NOT out MATCHES "resumed:.* step:3 .*qat:on step:4 bits:6.*step:6/6 val_loss")
  message(FATAL_ERROR "the resumed run's output:\n${out}")
endif()
file(SHA256 ${DIR}/resumed/model.pgolf resumed_sha)
if(NOT run_sha STREQUAL resumed_sha)
  message(FATAL_ERROR "the run resumed from step 3 on the device wrote another artifact than the uninterrupted run")
endif()

message(STATUS "the CUDA run's output:\n${gpu}")
if(NO_SUBMIT)
  message(STATUS "CUDA recipe run: val_loss ${trained}; resumed artifact identical (submit and verify skipped)")
  return()
endif()

# A submission of the device run; verify scores it on the CPU within the cross-device tolerance.
run("submit" out ${CPU} submit ${DIR}/cuda -o ${DIR}/submission)
if(DEFINED BUILD)
  set(build_args --build-dir ${BUILD})
endif()
run("verify" out ${CPU} verify ${DIR}/submission ${build_args})
if(NOT out MATCHES "ok   score of the artifact by the built binary: .*tolerance 0.002 \\(the run scored on cuda, the built binary on the CPU\\).*verified: ")
  message(FATAL_ERROR "verify of the device run:\n${out}")
endif()
# submission.json claiming a CPU score for a device run: refused.
file(READ ${DIR}/submission/submission.json json)
string(JSON json SET "${json}" eval_device "\"cpu\"")
file(WRITE ${DIR}/submission/submission.json "${json}")
execute_process(COMMAND ${CPU} verify ${DIR}/submission ${build_args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT out MATCHES "FAIL submission.json's eval_device 'cpu' is not train.log's device 'cuda'")
  message(FATAL_ERROR "verify of an altered eval_device (exit ${rc}):\n${out}${err}")
endif()
message(STATUS "CUDA recipe run: val_loss ${trained}; resumed artifact identical; verified across devices")
