// One forward + backward of GptCuda<S> on given parameters (table layout) and tokens, with the
// gradients poisoned first (zero_grad must clear every element): shared by the model kernels' units.
#pragma once

#include "model_kernels.hpp"
#include "pgolf/model/gpt_cuda.cuh"

template <pgolf::GptSpec S>
GpuStep run_gpu_step(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                     const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale, int phase = 0) {
  pgolf::GptCuda<S> model(batch, seq);
  model.set_phase(phase);
  model.set_params(params);
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
