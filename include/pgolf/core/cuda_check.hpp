// CUDA error checks with context: every runtime call and every launch is checked, and a failure
// throws pgolf::Error naming the call or kernel, the CUDA error and file:line.
#pragma once

#include <cuda_runtime.h>

#include "pgolf/core/error.hpp"

#define PGOLF_CUDA_CHECK(call)                                                                   \
  do {                                                                                           \
    const cudaError_t pgolf_err_ = (call);                                                       \
    if (pgolf_err_ != cudaSuccess)                                                               \
      PGOLF_FAIL("CUDA call ", #call, " failed: ", cudaGetErrorString(pgolf_err_));              \
  } while (0)

// After a kernel launch: reports launch-configuration errors under the kernel's name.
#define PGOLF_CUDA_CHECK_LAUNCH(kernel_name)                                                     \
  do {                                                                                           \
    const cudaError_t pgolf_err_ = cudaGetLastError();                                           \
    if (pgolf_err_ != cudaSuccess)                                                               \
      PGOLF_FAIL("CUDA kernel ", kernel_name, " failed to launch: ", cudaGetErrorString(pgolf_err_)); \
  } while (0)

namespace pgolf::cuda {

inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error for a CPU-only machine
    return 0;
  }
  return n;
}

}  // namespace pgolf::cuda
