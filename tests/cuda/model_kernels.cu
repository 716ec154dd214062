#include "model_kernels.hpp"

#include "cuda_specs.hpp"
#include "model_step.cuh"
#include "pgolf/export/calibration.hpp"

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

namespace {
template <pgolf::GptSpec S>
std::vector<std::vector<double>> hessians(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                          const std::vector<std::int32_t>& targets, int batch, int seq,
                                          const std::vector<bool>& wanted) {
  pgolf::GptCuda<S> model(batch, seq);
  model.set_params(params);
  pgolf::CudaHessianCollector hc(pgolf::GptCuda<S>::device_table, model.runtime().weights(), wanted);
  hc.start();
  (void)model.forward(ids, targets);
  hc.end_batch();
  hc.stop();
  return hc.hessians();
}
}  // namespace

std::vector<std::vector<double>> gpu_hessians_small(const std::vector<float>& params,
                                                    const std::vector<std::int32_t>& ids,
                                                    const std::vector<std::int32_t>& targets, int batch, int seq,
                                                    const std::vector<bool>& wanted, bool shared) {
  return shared ? hessians<cuda_test::kSmallShared>(params, ids, targets, batch, seq, wanted)
                : hessians<cuda_test::kSmall>(params, ids, targets, batch, seq, wanted);
}
