// One forward + backward of GptCuda<S> on given parameters (table layout) and tokens, with the
// gradients poisoned first (zero_grad must clear every element): shared by the model kernels' units.
#pragma once

#include <optional>

#include "model_kernels.hpp"
#include "pgolf/model/gpt_cuda.cuh"
#include "pgolf/ops/cpu/distill.hpp"

// The teacher of a distilling step: a GptCuda<S> on these parameters, run over the same tokens.
struct GpuTeacher {
  const std::vector<float>& params;
  pgolf::ops::cpu::DistillOptions options;
};

template <pgolf::GptSpec S>
GpuStep run_gpu_step(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                     const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale, int phase = 0,
                     const GpuTeacher* teacher = nullptr) {
  using Model = pgolf::GptCuda<S>;
  std::optional<Model> t;
  Model model(batch, seq);
  model.set_phase(phase);
  model.set_params(params);
  if (teacher) {
    if constexpr (Model::distills) {
      t.emplace(batch, seq);
      t->set_phase(phase);
      t->set_params(teacher->params);
      (void)t->forward(ids, targets);
      model.distill_from(*t, teacher->options);
    } else {
      PGOLF_CHECK(false, "run_gpu_step: this model has no distillation");
    }
  }
  PGOLF_CUDA_CHECK(cudaMemset(model.device_grads(), 0xff, Model::device_size * sizeof(float)));
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
