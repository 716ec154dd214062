# cmake -DTINY=<pgolf-tiny> -DSRC=<a submitted folder> [-DRUN=<its run folder>] [-DBUILD=<verify --build-dir of SRC>]
#       -DDIR=<scratch folder> -DCASES=<a,b,...> -P altered_submission.cmake
cmake_policy(SET CMP0057 NEW)  # if(IN_LIST) in a script
# A submission folder altered after `submit` must fail `verify`, which names what is wrong: a missing
# file, one byte of the packed code flipped (its CRC), packed code that no longer builds, one byte of
# the artifact flipped (the built binary cannot score it, or scores it differently), the score in
# submission.json moved (score). Cases: missing, pack, code, artifact, score;
# run_missing: `submit` of a run folder without model.pgolf.
# With BUILD (a folder where `verify --build-dir` built SRC's code): the artifact and score cases
# reuse that build (verify must say so), and the code case starts from a copy of it, which verify
# must not reuse for the altered code (it rebuilds, and the build fails).
string(REPLACE "," ";" CASES "${CASES}")
foreach(c IN LISTS CASES)  # a misspelt case would silently check nothing
  if(NOT c MATCHES "^(run_missing|missing|pack|code|artifact|score)$")
    message(FATAL_ERROR "unknown case '${c}'")
  endif()
endforeach()
if(NOT CASES)
  message(FATAL_ERROR "no CASES given")
endif()

function(run expect_regex)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "expected a failure, but it exited 0: ${ARGN}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${expect_regex}")
    message(FATAL_ERROR "exit ${rc}; output does not match '${expect_regex}': ${ARGN}\n${out}${err}")
  endif()
  message(STATUS "failed as expected (exit ${rc}): ${ARGN}\n${out}")
  set(out "${out}" PARENT_SCOPE)
endfunction()

# The artifact and score cases build nothing when BUILD holds the unaltered code's build.
set(reuse_args)
if(BUILD)
  set(reuse_args --build-dir "${BUILD}")
endif()
function(expect_reuse)
  if(BUILD AND NOT "${out}" MATCHES "ok   the packed code unpacked and built pgolf-tiny earlier in .* byte for byte\\): reused")
    message(FATAL_ERROR "verify did not reuse the build in ${BUILD}:\n${out}")
  endif()
endfunction()

function(fresh_copy name)
  file(REMOVE_RECURSE "${DIR}/${name}")
  file(COPY "${SRC}/" DESTINATION "${DIR}/${name}")
endfunction()

# Flips the lowest bit of the byte in the middle of a file (sh, od and dd: CMake writes no binary).
function(flip_middle_byte file)
  file(SIZE "${file}" n)
  math(EXPR at "${n} / 2")
  execute_process(COMMAND sh -c "b=$(od -An -tu1 -j${at} -N1 \"$0\" | tr -d ' '); printf \"$(printf '\\\\%03o' $((b ^ 1)))\" | dd of=\"$0\" bs=1 seek=${at} conv=notrunc 2>/dev/null"
                          "${file}" RESULT_VARIABLE rc)
  file(SHA256 "${file}" after)
  file(SHA256 "${SRC}/${ARGV1}" before)
  if(NOT rc EQUAL 0 OR after STREQUAL before)
    message(FATAL_ERROR "could not flip a byte of ${file}")
  endif()
endfunction()

# submit: a run folder without its artifact (RUN: the run folder the submission was made from).
if("run_missing" IN_LIST CASES)
  file(REMOVE_RECURSE "${DIR}/run")
  file(COPY "${RUN}/" DESTINATION "${DIR}/run")
  file(REMOVE "${DIR}/run/model.pgolf")
  run("the run folder .*run has no model.pgolf \\(did the run finish its export\\?\\)" ${TINY} submit "${DIR}/run")
endif()

if("missing" IN_LIST CASES)
  fresh_copy(missing)
  file(REMOVE "${DIR}/missing/train.log")
  run("FAIL missing file\\(s\\) in .*missing: train.log" ${TINY} verify "${DIR}/missing")
endif()

if("pack" IN_LIST CASES)
  fresh_copy(pack)
  flip_middle_byte("${DIR}/pack/code.shar.xz" code.shar.xz)
  run("FAIL packed code: .*code.shar.xz is corrupt: xz decoding failed" ${TINY} verify "${DIR}/pack")
endif()

# A valid pack whose code no longer compiles (the source's main() edited).
if("code" IN_LIST CASES)
  fresh_copy(code)
  execute_process(COMMAND sh -c "xz -dc \"$0/code.shar.xz\" | sed 's/^int main(int argc, char\\*\\* argv) {$/int main(int argc, char** argv) { altered;/' | xz -9 >\"$0/repacked\" && mv \"$0/repacked\" \"$0/code.shar.xz\""
                          "${DIR}/code" RESULT_VARIABLE rc)
  set(build_args)
  if(BUILD)
    file(REMOVE_RECURSE "${DIR}/code_build")
    file(COPY "${BUILD}/" DESTINATION "${DIR}/code_build")
    set(build_args --build-dir "${DIR}/code_build")
  endif()
  run("FAIL the packed code did not unpack and build \\(build.sh exit [1-9].*altered" ${TINY} verify "${DIR}/code" ${build_args})
  if("${out}" MATCHES "reused")
    message(FATAL_ERROR "verify reused a build of other code:\n${out}")
  endif()
endif()

if("artifact" IN_LIST CASES)
  fresh_copy(artifact)
  flip_middle_byte("${DIR}/artifact/model.pgolf" model.pgolf)
  run("FAIL (the built binary could not score the artifact model.pgolf|the artifact's score is not submission.json's)"
      ${TINY} verify "${DIR}/artifact" ${reuse_args})
  expect_reuse()
endif()

# submission.json's val_bpb moved by 1e-7 or 9e-7 (its 7th decimal; CMake has no floating point),
# ten times the tolerance or more: the built binary's score of the untouched artifact differs.
if("score" IN_LIST CASES)
  fresh_copy(score)
  file(READ "${DIR}/score/submission.json" json)
  string(JSON bpb GET "${json}" val_bpb)
  string(FIND "${bpb}" "." dot)
  math(EXPR at "${dot} + 7")
  math(EXPR after "${at} + 1")
  string(SUBSTRING "${bpb}" ${at} 1 digit)
  math(EXPR digit "(${digit} + 1) % 10")
  string(SUBSTRING "${bpb}" 0 ${at} head)
  string(SUBSTRING "${bpb}" ${after} -1 tail)
  string(JSON json SET "${json}" val_bpb "${head}${digit}${tail}")
  file(WRITE "${DIR}/score/submission.json" "${json}")
  run("ok   the packed code unpacked and built.*FAIL the artifact's score is not submission.json's.*\\|diff\\| [0-9.e-]+\\), val_loss"
      ${TINY} verify "${DIR}/score" ${reuse_args})
  expect_reuse()
endif()
file(REMOVE_RECURSE "${DIR}")
