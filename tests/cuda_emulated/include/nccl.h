// The NCCL emulation in place of the toolkit's nccl.h (tests/cuda_emulated/emulate_nccl.hpp).
#pragma once
#include "../emulate_nccl.hpp"
