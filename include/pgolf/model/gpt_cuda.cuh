// GptCuda<Spec>: the same model as Gpt<Spec> (model/gpt.hpp), with the same parameter table,
// initialisation, schedule and U-Net skips, on the CUDA backend: LanguageModel<GptArch<Spec>, Cuda>.
// Each component runs its CUDA implementation (in its own header, under nvcc), and the backend's
// fused runs take the hot consecutive pairs: resid_mix + norm (mix_norm), scaled residual + norm
// (scale_add_norm), the qkv product + Q/K norm + RoPE, softcap + cross-entropy. Weight gradients are
// accumulated by the products themselves (beta 1), per-channel gradients by the deterministic column
// reduction, the embedding's by the sorted segment sum, so a step gives the same bits every run.
#pragma once

#include "pgolf/backend/cuda/backend.cuh"
#include "pgolf/model/gpt_params.hpp"
#include "pgolf/model/gpt_spec.hpp"
#include "pgolf/model/language_model.hpp"

namespace pgolf {

template <GptSpec S>
class GptCuda : public LanguageModel<GptArch<S>, Cuda> {
  using Base = LanguageModel<GptArch<S>, Cuda>;

 public:
  using Base::Base;
  static constexpr GptSpec spec = S;
  static constexpr auto device_table = Base::storage_table;
  static constexpr std::size_t device_size = Cuda::storage_size(device_table);

  static bool device_available() { return Cuda::device_available(); }
  float* device_params() { return this->runtime().params(); }
  float* device_grads() { return this->runtime().grads(); }
  cuda::Gemm& gemm() { return this->runtime().gemm; }
};

}  // namespace pgolf
