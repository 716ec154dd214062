# cmake -DNVCC=... -DINCLUDE=<include/> -DARCH=<sm number> -DSOURCE=<.cu> -DKERNELS="name|name|..."
#       -DOUT=<object> -P resource_usage.cmake
# Compiles SOURCE for the GPU with ptxas's resource report and fails when a kernel spills registers
# to local memory (a compile-time fact: no GPU needed) or when a kernel named in KERNELS (a
# substring of its mangled name) was not compiled at all.
string(REPLACE "|" ";" kernels "${KERNELS}")
execute_process(COMMAND ${NVCC} -O3 -std=c++20 --expt-relaxed-constexpr -arch=sm_${ARCH} -I${INCLUDE}
                        --resource-usage -c ${SOURCE} -o ${OUT}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(report "${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nvcc failed (exit ${rc}):\n${report}")
endif()
# ptxas prints, per kernel, four lines: Compiling entry function '<name>', Function properties,
# its stack and spill bytes, its registers.
string(REGEX MATCHALL "Compiling entry function '[^']+'[^\n]*\n[^\n]*\n[^\n]*spill stores[^\n]*\n[^\n]*registers"
       entries "${report}")
foreach(k IN LISTS kernels)
  set(found OFF)
  foreach(e IN LISTS entries)
    if(e MATCHES "${k}")
      set(found ON)
      if(NOT e MATCHES " 0 bytes spill stores")
        message(FATAL_ERROR "kernel ${k} spills registers:\n${e}\n\nfull report:\n${report}")
      endif()
      string(REGEX MATCH "Used [0-9]+ registers" regs "${e}")
    endif()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "kernel ${k} is not in ptxas's report:\n${report}")
  endif()
  message(STATUS "${k}: ${regs}, no spills")
endforeach()
