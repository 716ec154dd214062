// The cuBLASLt emulation in place of the toolkit's cublasLt.h (tests/cuda_emulated/emulate_cublaslt.hpp).
#pragma once
#include "../emulate_cublaslt.hpp"
