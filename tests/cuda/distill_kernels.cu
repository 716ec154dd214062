#include "distill_kernels.hpp"

#include "cuda_specs.hpp"
#include "model_step.cuh"
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
  static_assert(pgolf::GptCuda<cuda_test::kSmall>::distills, "the CUDA GPT with the symmetric softcap distils");
  const GpuTeacher teacher{teacher_params, o};
  return run_gpu_step<cuda_test::kSmall>(params, ids, targets, batch, seq, grad_scale, 0, &teacher);
}

// The asymmetric softcap's fused head has no distillation kernel: such a model has no
// distill_from, and the Trainer refuses distill_steps for it by name.
#include "pgolf/presets/records_stack.hpp"
static_assert(!pgolf::GptCuda<pgolf::presets::records_stack_tiny>::distills);
