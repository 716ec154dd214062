#pragma once

#include <cstdint>
#include <vector>

#include "model_kernels.hpp"
#include "pgolf/ops/cpu/distill.hpp"

// The fused softcap + distillation kernels alone (ops/cuda/distill.cuh, vocabulary 1024) on raw
// logits [rows, 1024] given as floats (rounded to bf16 on upload, as the head product writes them):
// the per-row cross-entropy and KL, and the gradient w.r.t. the raw student logits (bf16, returned
// as floats).
struct GpuDistillRows {
  std::vector<float> row_ce, row_kl, dlogits;
};
GpuDistillRows gpu_softcap_distill_1024(const std::vector<float>& zs, const std::vector<float>& zt,
                                        const std::vector<std::int32_t>& targets, float cap, float k, float a_ce,
                                        float a_kl);

// One forward + backward of GptCuda<kSmall> on `params` distilling from a GptCuda<kSmall> on
// `teacher_params` (both table layout) over the same tokens (LanguageModel::distill_from).
GpuStep gpu_step_small_distill(const std::vector<float>& params, const std::vector<float>& teacher_params,
                               const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& targets,
                               int batch, int seq, double grad_scale, const pgolf::ops::cpu::DistillOptions& o);
