// Umbrella header: everything a variant binary needs.
#pragma once

#include "pgolf/core/error.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/model/gpt_params.hpp"
#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/nn/param_table.hpp"
