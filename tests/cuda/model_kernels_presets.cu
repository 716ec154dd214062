// GptCuda steps of the presets' CPU-scale models (every block technique of the Frugendorff and of the
// records' stack), in a translation unit of their own to keep nvcc's instantiations apart.
#include "model_step.cuh"
#include "pgolf/presets/frugendorff.hpp"
#include "pgolf/presets/records_stack.hpp"

GpuStep gpu_step_frugendorff_tiny(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                  const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run_gpu_step<pgolf::presets::frugendorff_tiny>(params, ids, targets, batch, seq, grad_scale, 0);
}
GpuStep gpu_step_records_stack_tiny(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                    const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale,
                                    int phase) {
  return run_gpu_step<pgolf::presets::records_stack_tiny>(params, ids, targets, batch, seq, grad_scale, phase);
}
