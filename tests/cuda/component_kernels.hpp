#pragma once

#include <string_view>

#include "../nn/lone_run.hpp"

// One run of the case named `name` (tests/nn/component_cases.hpp) on the CUDA backend; a name that is
// not a CUDA case is an error.
pgolf::test::LoneResult run_case_cuda(std::string_view name, const pgolf::test::LoneInput& in);
