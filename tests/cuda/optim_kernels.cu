#include "optim_kernels.hpp"

#include "cuda_specs.hpp"
#include "pgolf/model/gpt_cuda.cuh"
#include "pgolf/optim/cuda/adam.cuh"
#include "pgolf/optim/cuda/clip.cuh"
#include "pgolf/optim/cuda/muon.cuh"

std::vector<float> gpu_optimizer_steps(const std::vector<float>& params, const std::vector<std::vector<float>>& grads,
                                       double matrix_lr, double adam_lr, double momentum, bool row_normalize) {
  using M = pgolf::GptCuda<cuda_test::kSmall>;
  using pgolf::cuda::DeviceBuffer;
  constexpr auto& table = M::param_table;
  constexpr auto& dev = M::device_table;
  DeviceBuffer<float> w(M::device_size), g(M::device_size);
  pgolf::cuda::to_device_layout<float>(table, dev, params, w.data(), M::device_size);
  pgolf::cuda::Gemm gemm;
  pgolf::cuda::CudaMuon muon(dev, pgolf::MuonOptions{.momentum = momentum, .row_normalize = row_normalize},
                             gemm);
  pgolf::cuda::CudaAdam embed(dev, pgolf::OptimGroup::adam_embed, pgolf::AdamOptions{});
  pgolf::cuda::CudaAdam scalar(dev, pgolf::OptimGroup::adam_scalar, pgolf::AdamOptions{.weight_decay = 0.1});
  for (const auto& gs : grads) {
    pgolf::cuda::to_device_layout<float>(table, dev, gs, g.data(), M::device_size);
    muon.step(w.data(), g.data(), matrix_lr);
    embed.step(w.data(), g.data(), adam_lr);
    scalar.step(w.data(), g.data(), adam_lr);
  }
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  return pgolf::cuda::to_table_layout(table, dev, w.data());
}

double gpu_clip_grad_norm(std::vector<float>& g, double max_norm) {
  pgolf::cuda::DeviceBuffer<float> d(g.size());
  d.upload(g);
  const double norm = pgolf::cuda::clip_grad_norm(pgolf::cuda::DeviceParamSpan{d.data(), g.size()}, max_norm);
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  d.download(g);
  return norm;
}
