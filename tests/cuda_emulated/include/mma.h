// The CUDA emulation in place of the toolkit's mma.h (tests/cuda_emulated/emulate_runtime.hpp).
#pragma once
#include "../emulate_runtime.hpp"
