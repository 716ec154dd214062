// The CUDA emulation in place of the toolkit's cuda_bf16.h (tests/cuda_emulated/emulate_runtime.hpp).
#pragma once
#include "../emulate_runtime.hpp"
