# pgolf_add_variant(<name> SOURCE <file> [LIBRARIES <lib>...])
#
# Builds one specialised binary for one model variant: the variant's spec is a compile-time
# constant in <file>, so each ablation compiles into its own executable.
function(pgolf_add_variant name)
  cmake_parse_arguments(ARG "" "SOURCE" "LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCE)
    message(FATAL_ERROR "pgolf_add_variant(${name}): SOURCE <file> is required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "pgolf_add_variant(${name}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  add_executable(${name} ${ARG_SOURCE})
  target_link_libraries(${name} PRIVATE pgolf::pgolf ${ARG_LIBRARIES})
endfunction()
