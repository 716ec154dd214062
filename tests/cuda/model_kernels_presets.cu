// GptCuda steps of the presets' CPU-scale models (every block technique of the Frugendorff and of the
// records' stack), in a translation unit of their own to keep nvcc's instantiations apart.
#include "model_kernels.hpp"

#include "pgolf/model/gpt_cuda.cuh"
#include "pgolf/presets/frugendorff.hpp"
#include "pgolf/presets/records_stack.hpp"

namespace {
template <pgolf::GptSpec S>
GpuStep run(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
            const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale, int phase) {
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
}  // namespace

GpuStep gpu_step_frugendorff_tiny(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                  const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale) {
  return run<pgolf::presets::frugendorff_tiny>(params, ids, targets, batch, seq, grad_scale, 0);
}
GpuStep gpu_step_records_stack_tiny(const std::vector<float>& params, const std::vector<std::int32_t>& ids,
                                    const std::vector<std::int32_t>& targets, int batch, int seq, double grad_scale,
                                    int phase) {
  return run<pgolf::presets::records_stack_tiny>(params, ids, targets, batch, seq, grad_scale, phase);
}
