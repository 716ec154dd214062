// Adam / AdamW on the GPU: the CPU reference's update (optim/adam.hpp), one fused kernel over every
// tensor of a group. The tensors of a group are segments of the device parameter buffer; one
// launch covers them all (grid y = segment), so a step of the scalar group (dozens of small
// tensors) is one launch, not dozens. State (m, v) is packed in table order exactly as the CPU
// optimizer packs it, so checkpoints move between backends. Floor: reading w, g, m, v and writing
// w, m, v once: 28 bytes per parameter over memory bandwidth.
#pragma once

#include <array>
#include <cmath>
#include <vector>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/param_layout.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::cuda {

// One tensor of an optimizer group: its offset in the parameter buffer, in the group's packed
// state, its size, and its row length (matrices).
struct Segment {
  std::size_t param, state, n;
  int cols;
};

namespace detail {
__global__ inline void adam_kernel(const Segment* __restrict__ segs, float* __restrict__ w, const float* __restrict__ g,
                                   float* __restrict__ m, float* __restrict__ v, float b1, float b2, float step_size,
                                   float sqrt_bc2, float eps, float decay) {
  const Segment s = segs[blockIdx.y];
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < s.n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t p = s.param + i, q = s.state + i;
    const float gi = g[p];
    const float mi = b1 * m[q] + (1.f - b1) * gi;
    const float vi = b2 * v[q] + (1.f - b2) * gi * gi;
    m[q] = mi;
    v[q] = vi;
    w[p] = w[p] * decay - step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
  }
}
}  // namespace detail

class CudaAdam {
 public:
  // dev_table: the model's device layout (backend/cuda/param_layout.hpp).
  template <std::size_t N>
  CudaAdam(const std::array<ParamInfo, N>& dev_table, OptimGroup group, AdamOptions options) : options_(options) {
    std::vector<Segment> segs;
    std::size_t at = 0;
    for (const auto& p : dev_table)
      if (p.group == group) {
        segs.push_back({p.offset, at, p.numel(), p.cols});
        at += p.numel();
      }
    state_ = at;
    if (segs.empty()) return;
    segs_ = DeviceBuffer<Segment>(segs.size());
    segs_.upload(segs);
    m_ = DeviceBuffer<float>(at);
    v_ = DeviceBuffer<float>(at);
    m_.fill_bytes(0);
    v_.fill_bytes(0);
  }

  bool empty() const { return state_ == 0; }
  long long steps_taken() const { return t_; }
  void set_steps_taken(long long t) { t_ = t; }
  std::size_t state_size() const { return state_; }
  DeviceBuffer<float>& first_moment() { return m_; }
  DeviceBuffer<float>& second_moment() { return v_; }
  const DeviceBuffer<float>& first_moment() const { return m_; }
  const DeviceBuffer<float>& second_moment() const { return v_; }

  void step(DeviceParamSpan params, DeviceParamSpan grads, double lr) { step(params.data, grads.data, lr); }
  void step(float* params, const float* grads, double lr, cudaStream_t st = nullptr) {
    ++t_;
    if (empty()) return;
    const double bc1 = 1.0 - std::pow(options_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(options_.beta2, double(t_));
    const dim3 grid(64, unsigned(segs_.size()));
    detail::adam_kernel<<<grid, 256, 0, st>>>(segs_.data(), params, grads, m_.data(), v_.data(), float(options_.beta1),
                                              float(options_.beta2), float(lr / bc1), float(std::sqrt(bc2)),
                                              float(options_.eps), float(1.0 - lr * options_.weight_decay));
    PGOLF_CUDA_CHECK_LAUNCH("adam");
  }

 private:
  AdamOptions options_;
  DeviceBuffer<Segment> segs_;
  DeviceBuffer<float> m_, v_;
  std::size_t state_ = 0;
  long long t_ = 0;
};

}  // namespace pgolf::cuda
