#include "model_kernels.hpp"

#include "cuda_specs.hpp"
#include "pgolf/model/gpt_cuda.cuh"

namespace {
template <pgolf::GptSpec S>
GpuStep run(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
            const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale, int phase = 0) {
  pgolf::GptCuda<S> model(batch, seq);
  model.set_phase(phase);
  model.set_params(params);
  // Poison the gradients' padding and values first: zero_grad must clear every element.
  PGOLF_CUDA_CHECK(cudaMemset(model.device_grads(), 0xff, pgolf::GptCuda<S>::device_size * sizeof(float)));
  model.zero_grad();
  GpuStep out;
  out.loss = model.forward(ids, targets);
  const auto rl = model.row_losses();
  out.row_losses.assign(rl.begin(), rl.end());
  model.backward(grad_scale);
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  out.grads = model.grads_host();
  return out;
}
}  // namespace

GpuStep gpu_step_small(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                       const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run<cuda_test::kSmall>(params, ids, targets, batch, seq, grad_scale);
}
GpuStep gpu_step_small_shared(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                              const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run<cuda_test::kSmallShared>(params, ids, targets, batch, seq, grad_scale);
}
GpuStep gpu_step_small_looped(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                              const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale,
                              int phase) {
  return run<cuda_test::kSmallLooped>(params, ids, targets, batch, seq, grad_scale, phase);
}
GpuStep gpu_step_small_xsa_gate(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run<cuda_test::kSmallXsaGate>(params, ids, targets, batch, seq, grad_scale);
}
