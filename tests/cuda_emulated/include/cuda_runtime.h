// The CUDA emulation in place of the toolkit's cuda_runtime.h (tests/cuda_emulated/emulate_runtime.hpp).
#pragma once
#include "../emulate_runtime.hpp"
