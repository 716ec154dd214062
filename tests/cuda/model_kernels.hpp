#pragma once

#include <cstdint>
#include <vector>

// One forward + backward of GptCuda on given parameters (table layout) and tokens.
struct GpuStep {
  double loss = 0;
  std::vector<float> grads, row_losses;
};
GpuStep gpu_step_small(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                       const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale);
GpuStep gpu_step_small_shared(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                              const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale);
// The looped spec in a depth phase (0: loop off, 1: loop on).
GpuStep gpu_step_small_looped(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                              const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale,
                              int phase);
GpuStep gpu_step_small_xsa_gate(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale);
// The presets' CPU-scale models (tests/cuda/model_kernels_presets.cu).
GpuStep gpu_step_frugendorff_tiny(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                  const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale);
GpuStep gpu_step_records_stack_tiny(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                    const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale,
                                    int phase);

// GPTQ's Hessians collected on the GPU (CudaHessianCollector) over one forward of GptCuda<kSmall>
// (kSmallShared with shared = true) on the given parameters (table layout) and tokens, for the table
// rows flagged in `wanted`; per row H (in x in) or empty.
std::vector<std::vector<double>> gpu_hessians_small(const std::vector<float>& params,
                                                    const std::vector<std::int32_t>& ids,
                                                    const std::vector<std::int32_t>& targets, int batch, int seq,
                                                    const std::vector<bool>& wanted, bool shared);
