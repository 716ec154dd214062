#include "model_kernels.hpp"

#include "cuda_specs.hpp"
#include "model_step.cuh"

GpuStep gpu_step_small(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                       const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run_gpu_step<cuda_test::kSmall>(params, ids, targets, batch, seq, grad_scale);
}
GpuStep gpu_step_small_shared(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                              const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run_gpu_step<cuda_test::kSmallShared>(params, ids, targets, batch, seq, grad_scale);
}
GpuStep gpu_step_small_looped(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                              const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale,
                              int phase) {
  return run_gpu_step<cuda_test::kSmallLooped>(params, ids, targets, batch, seq, grad_scale, phase);
}
GpuStep gpu_step_small_xsa_gate(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run_gpu_step<cuda_test::kSmallXsaGate>(params, ids, targets, batch, seq, grad_scale);
}
