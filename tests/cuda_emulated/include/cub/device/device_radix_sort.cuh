// The CUB emulation in place of CCCL's cub/device/device_radix_sort.cuh (tests/cuda_emulated/emulate_cub.hpp).
#pragma once
#include "../../../emulate_cub.hpp"
