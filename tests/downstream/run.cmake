# ctest driver: install the build tree into a scratch prefix, then configure, build and run the
# downstream project against it. Arguments: -DBUILD_DIR, -DSOURCE_DIR, -DWORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build"
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the downstream project failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the downstream project failed (${rc})")
endif()
execute_process(COMMAND "${WORK_DIR}/build/downstream_variant" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the downstream binary failed (${rc})")
endif()
execute_process(COMMAND "${WORK_DIR}/build/downstream_ablation-mlp_mult-3" RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "ablation point 'mlp.mult=3'")
  message(FATAL_ERROR "the downstream ablation binary failed (${rc}) or lacks its point: ${out}")
endif()
if(NOT EXISTS "${WORK_DIR}/build/downstream_ablation.ablation.json")
  message(FATAL_ERROR "the downstream ablation wrote no manifest")
endif()
