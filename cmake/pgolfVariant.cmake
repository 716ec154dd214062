# pgolf_add_variant(<name> SOURCE <file> [CUDA] [LIBRARIES <lib>...])
#
# Builds one specialised binary for one model variant: the variant's spec is a compile-time
# constant in <file>, so each ablation compiles into its own executable.
#
# CUDA: where the CUDA language is enabled, <file> is compiled by nvcc with PGOLF_WITH_CUDA=1 and
# linked with the CUDA runtime and cuBLASLt, so the binary also carries the GPU specialisation
# (app::gpt_main picks it with --device); elsewhere the option is ignored and the binary is CPU-only.
#
# The binary gets these definitions:
#   PGOLF_CODE_BYTES       the bytes of <file> plus every header under include/pgolf/, counted at
#                          configure time: an upper bound of the code, logged only when the sources
#                          below are gone (a run counts the packed code instead, app/pack_code.hpp);
#   PGOLF_VARIANT_SOURCE   <file>'s absolute path and
#   PGOLF_INCLUDE_DIR      the include folder holding pgolf/: what `submit` packs and a run counts;
#   PGOLF_BUNDLED_DATA_DIR the bundled tokenizers and FineWeb sample, the default data.
set(_PGOLF_VARIANT_LIST_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(pgolf_add_variant name)
  cmake_parse_arguments(ARG "CUDA" "SOURCE" "LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCE)
    message(FATAL_ERROR "pgolf_add_variant(${name}): SOURCE <file> is required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "pgolf_add_variant(${name}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  add_executable(${name} ${ARG_SOURCE})
  target_link_libraries(${name} PRIVATE pgolf::pgolf ${ARG_LIBRARIES})
  get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if(ARG_CUDA AND "CUDA" IN_LIST languages)
    set_source_files_properties(${ARG_SOURCE} PROPERTIES LANGUAGE CUDA)
    find_package(CUDAToolkit REQUIRED)
    target_compile_definitions(${name} PRIVATE PGOLF_WITH_CUDA=1)
    target_link_libraries(${name} PRIVATE CUDA::cudart CUDA::cublasLt)
    if(PGOLF_HAVE_NCCL)  # data parallelism on GPUs (dist/nccl.cuh)
      target_compile_definitions(${name} PRIVATE PGOLF_HAVE_NCCL=1)
      target_include_directories(${name} PRIVATE ${PGOLF_NCCL_INCLUDE_DIR})
      target_link_libraries(${name} PRIVATE ${PGOLF_NCCL_LIBRARY})
    endif()
  endif()

  # Headers: the source tree (cmake/ next to include/) or an install (lib/cmake/pgolf -> include/).
  foreach(candidate "${_PGOLF_VARIANT_LIST_DIR}/../include/pgolf" "${_PGOLF_VARIANT_LIST_DIR}/../../../include/pgolf")
    if(IS_DIRECTORY "${candidate}")
      set(header_dir "${candidate}")
      break()
    endif()
  endforeach()
  get_filename_component(source "${ARG_SOURCE}" ABSOLUTE)
  file(SIZE "${source}" code_bytes)
  if(header_dir)
    file(GLOB_RECURSE headers "${header_dir}/*.hpp" "${header_dir}/*.cuh")
    foreach(h IN LISTS headers)
      file(SIZE "${h}" n)
      math(EXPR code_bytes "${code_bytes} + ${n}")
    endforeach()
  endif()
  target_compile_definitions(${name} PRIVATE PGOLF_CODE_BYTES=${code_bytes} PGOLF_VARIANT_SOURCE="${source}")
  if(header_dir)
    get_filename_component(include_dir "${header_dir}/.." ABSOLUTE)
    target_compile_definitions(${name} PRIVATE PGOLF_INCLUDE_DIR="${include_dir}")
  endif()
  if(PGOLF_BUNDLED_DATA_DIR)
    target_compile_definitions(${name} PRIVATE PGOLF_BUNDLED_DATA_DIR="${PGOLF_BUNDLED_DATA_DIR}")
  endif()
endfunction()
