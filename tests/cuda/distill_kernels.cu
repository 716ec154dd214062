#include "distill_kernels.hpp"

#include "cuda_specs.hpp"
#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/model/gpt_cuda.cuh"
#include "pgolf/ops/cuda/distill.cuh"

GpuDistillRows gpu_softcap_distill_1024(const std::vector<float>& zs, const std::vector<float>& zt,
                                        const std::vector<std::int32_t>& targets, float cap, float k, float a_ce,
                                        float a_kl) {
  using pgolf::ops::cuda::bf16;
  constexpr int V = 1024;
  const std::size_t rows = targets.size();
  auto upload = [](const std::vector<float>& x) {
    std::vector<bf16> h(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) h[i] = __float2bfloat16_rn(x[i]);
    pgolf::cuda::DeviceBuffer<bf16> d(x.size());
    d.upload(std::span<const bf16>(h));
    return d;
  };
  auto s = upload(zs), t = upload(zt);
  pgolf::cuda::DeviceBuffer<std::int32_t> y(rows);
  y.upload(std::span<const std::int32_t>(targets));
  pgolf::cuda::DeviceBuffer<float> ce(rows), kl(rows), lse(3 * rows);
  pgolf::ops::cuda::softcap_distill_forward<V>(s.data(), t.data(), y.data(), rows, cap, k, ce.data(), kl.data(),
                                               lse.data());
  // The gradient written over the student's logits, as the model's head does.
  pgolf::ops::cuda::softcap_distill_backward<V>(s.data(), t.data(), y.data(), lse.data(), rows, cap, k, a_ce, a_kl,
                                                s.data());
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  GpuDistillRows out{std::vector<float>(rows), std::vector<float>(rows), std::vector<float>(zs.size())};
  PGOLF_CUDA_CHECK(cudaMemcpy(out.row_ce.data(), ce.data(), rows * sizeof(float), cudaMemcpyDeviceToHost));
  PGOLF_CUDA_CHECK(cudaMemcpy(out.row_kl.data(), kl.data(), rows * sizeof(float), cudaMemcpyDeviceToHost));
  std::vector<bf16> d(zs.size());
  PGOLF_CUDA_CHECK(cudaMemcpy(d.data(), s.data(), d.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < d.size(); ++i) out.dlogits[i] = __bfloat162float(d[i]);
  return out;
}

GpuStep gpu_step_small_distill(const std::vector<float>& params, const std::vector<float>& teacher_params,
                               const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& targets,
                               int batch, int seq, double grad_scale, const pgolf::ops::cpu::DistillOptions& o) {
  using Model = pgolf::GptCuda<cuda_test::kSmall>;
  static_assert(Model::distills, "the CUDA GPT with the symmetric softcap distils");
  Model model(batch, seq), teacher(batch, seq);
  model.set_params(params);
  teacher.set_params(teacher_params);
  (void)teacher.forward(ids, targets);
  model.distill_from(teacher, o);
  model.zero_grad();
  GpuStep out;
  out.loss = model.forward(ids, targets);
  const auto rl = model.row_losses();
  out.row_losses.assign(rl.begin(), rl.end());
  model.backward(grad_scale);
  model.clear_teacher();
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  out.grads = model.grads_host();
  return out;
}

// The asymmetric softcap's fused head has no distillation kernel: such a model has no
// distill_from, and the Trainer refuses distill_steps for it by name.
#include "pgolf/presets/records_stack.hpp"
static_assert(!pgolf::GptCuda<pgolf::presets::records_stack_tiny>::distills);
