// Cuda: the GPU backend. Precision as the reference trainer under autocast: fp32 master weights and
// gradients (in the device layout of param_layout.hpp), a bf16 copy of every weight made at the start
// of each forward, bf16 matrix-product inputs and outputs, fp32 accumulation, fp32 residual stream,
// norms, softmax statistics and loss.
//
// Registers: the stream x and the anchor x0 are fp32 [tokens, dim]; the branch registers n and h are
// bf16 (they feed products); q, k, v are bf16 head-major ([batch, heads, seq, head_dim], one matrix
// per (batch, KV head) for the attention products). Gradients: fp32 for x, x0, n (products write
// d n in fp32 for the norm's backward) and q, k, v (attention's backward); bf16 for h (it is the dY
// of the next product's backward).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "pgolf/backend/arena_plan.hpp"
#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/gemm.hpp"
#include "pgolf/backend/cuda/param_layout.hpp"
#include "pgolf/core/cuda_check.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/memory.hpp"
#include "pgolf/nn/component.hpp"
#include "pgolf/ops/cpu/distill.hpp"
#include "pgolf/ops/cuda/channel.cuh"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf {

namespace cuda {
// Calibration hook (GPTQ's Hessians, export/calibration.hpp's CudaHessianCollector): while an
// observer is installed, every product run through Cuda::linear reports its weight, its input and
// the handle to use for its own products (same stream). Off: one pointer test per product.
struct ProductInputObserver {
  virtual ~ProductInputObserver() = default;
  virtual void observe(Gemm& gemm, const __nv_bfloat16* W, const __nv_bfloat16* X, int tokens, int in, int out) = 0;
};
inline ProductInputObserver*& product_input_observer() {
  static ProductInputObserver* observer = nullptr;
  return observer;
}
}  // namespace cuda

struct Cuda {
  using bf16 = ops::cuda::bf16;
  using Scalar = float;
  using Weight = bf16;
  template <Reg r>
  using Value = std::conditional_t<r == Reg::x || r == Reg::x0 || r == Reg::x1 || r == Reg::a, float, bf16>;
  template <Reg r>
  using Grad = std::conditional_t<r == Reg::h, bf16, float>;
  static constexpr bool device = true;

  template <std::size_t N>
  static constexpr std::array<ParamInfo, N> storage_table(const std::array<ParamInfo, N>& table) {
    return cuda::device_param_table(table);
  }
  template <std::size_t N>
  static constexpr std::size_t storage_size(const std::array<ParamInfo, N>& dev) {
    return cuda::device_table_size(dev);
  }
  template <class X>
  static void zero(X* p, std::size_t n) {
    if (n > 0) PGOLF_CUDA_CHECK(cudaMemset(p, 0, n * sizeof(X)));
  }
  static void add_into(const float* a, std::size_t n, float* out) { ops::cuda::add_into(a, n, out); }

  static bool device_available() { return cuda::device_count() > 0; }

  // Y[tokens, out] = X[tokens, in] W[out, in]^T (Y in `yt`). Reports to the calibration hook, if set.
  static void linear(cuda::Gemm& gemm, int tokens, const bf16* X, const bf16* W, void* Y, int in, int out,
                     cuda::DType yt) {
    if (cuda::ProductInputObserver* o = cuda::product_input_observer()) o->observe(gemm, W, X, tokens, in, out);
    gemm.run({.ta = false, .tb = true, .M = tokens, .N = out, .K = in, .lda = in, .ldb = in, .ldc = out,
              .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = yt},
             X, W, Y, 1.f, 0.f);
  }
  // dW[out, in] += dY^T X;  dX[tokens, in] = dY W (in dX's type; added when accumulate).
  static void linear_backward(cuda::Gemm& gemm, int tokens, const bf16* dY, const bf16* X, const bf16* W, float* dW,
                              void* dX, cuda::DType dxt, int in, int out, bool accumulate) {
    gemm.run({.ta = true, .tb = false, .M = out, .N = in, .K = tokens, .lda = out, .ldb = in, .ldc = in,
              .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = cuda::DType::f32},
             dY, X, dW, 1.f, 1.f);
    gemm.run({.ta = false, .tb = false, .M = tokens, .N = in, .K = out, .lda = out, .ldb = in, .ldc = in,
              .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = dxt},
             dY, W, dX, 1.f, accumulate ? 1.f : 0.f);
  }
  template <class X>
  static constexpr cuda::DType dtype() {
    return std::is_same_v<X, float> ? cuda::DType::f32 : cuda::DType::bf16;
  }

  // A model's device memory and the handles every component shares.
  class Runtime {
   public:
    explicit Runtime(std::size_t storage) : params_(storage), grads_(storage), wbf_(storage) {
      params_.fill_bytes(0);
      grads_.fill_bytes(0);
    }

    cuda::Gemm gemm;
    ops::cuda::ColumnGrad colgrad;

    float* params() { return params_.data(); }
    const float* params() const { return params_.data(); }
    float* grads() { return grads_.data(); }
    const float* grads() const { return grads_.data(); }
    const bf16* weights() const { return wbf_.data(); }
    cuda::DeviceParamSpan param_span() const { return {const_cast<float*>(params_.data()), params_.size()}; }
    cuda::DeviceParamSpan grad_span() const { return {const_cast<float*>(grads_.data()), grads_.size()}; }
    void zero_grad() { grads_.fill_bytes(0); }

    template <std::size_t N>
    void set_params(const std::array<ParamInfo, N>& table, const std::array<ParamInfo, N>& dev,
                    std::span<const float> host) {
      cuda::to_device_layout<float>(table, dev, host, params_.data(), params_.size());
    }
    template <std::size_t N>
    std::vector<float> params_host(const std::array<ParamInfo, N>& table, const std::array<ParamInfo, N>& dev) const {
      return cuda::to_table_layout(table, dev, params_.data());
    }
    template <std::size_t N>
    std::vector<float> grads_host(const std::array<ParamInfo, N>& table, const std::array<ParamInfo, N>& dev) const {
      return cuda::to_table_layout(table, dev, grads_.data());
    }

    void allocate(const ArenaPlan& plan, const Shape& sh) {
      std::size_t free = 0, total = 0;
      PGOLF_CUDA_CHECK(cudaMemGetInfo(&free, &total));
      check_fits(plan.bytes(), free, format("the activations of a %d x %d micro-batch", sh.batch, sh.seq),
                 "the GPU (free memory)");
      arena_ = cuda::DeviceBuffer<std::byte>(plan.bytes());
      plan.assign(arena_.data());  // cudaMalloc returns 256-byte aligned memory
    }
    std::size_t arena_bytes() const { return arena_.size(); }

    // Checks and uploads the batch, and makes this forward's bf16 weights.
    void begin_forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets, int vocab) {
      scored_ = 0;
      for (std::size_t n = 0; n < ids.size(); ++n) {
        PGOLF_CHECK(ids[n] >= 0 && ids[n] < vocab, "token id ", ids[n], " at position ", n,
                    " is outside the vocabulary [0, ", vocab, ")");
        PGOLF_CHECK(targets[n] < vocab, "target id ", targets[n], " at position ", n, " is outside the vocabulary [0, ",
                    vocab, ")");
        scored_ += targets[n] >= 0 ? 1 : 0;
      }
      if (ids_.size() != ids.size()) ids_ = cuda::DeviceBuffer<std::int32_t>(ids.size());
      if (targets_.size() != targets.size()) targets_ = cuda::DeviceBuffer<std::int32_t>(targets.size());
      ids_.upload(ids);
      targets_.upload(targets);
      ops::cuda::cast_to_bf16(params_.data(), params_.size(), wbf_.data());
    }
    const std::int32_t* ids() const { return ids_.data(); }
    const std::int32_t* targets() const { return targets_.data(); }
    // Positions with a target (>= 0) in the last batch.
    std::size_t scored() const { return scored_; }

    // Self-distillation: while a teacher's raw head logits [tokens, vocab] (bf16, device) are set, the
    // loss is the distillation loss against them (ops/cuda/distill.cuh) instead of the cross-entropy.
    void set_teacher(const bf16* logits, const ops::cpu::DistillOptions& o) {
      o.validate();
      teacher_ = logits, distill_ = o;
    }
    void clear_teacher() { teacher_ = nullptr; }
    const bf16* teacher() const { return teacher_; }
    const ops::cpu::DistillOptions& distill_options() const { return distill_; }

   private:
    const bf16* teacher_ = nullptr;
    ops::cpu::DistillOptions distill_;
    cuda::DeviceBuffer<float> params_, grads_;
    cuda::DeviceBuffer<bf16> wbf_;
    cuda::DeviceBuffer<std::byte> arena_;
    cuda::DeviceBuffer<std::int32_t> ids_, targets_;
    std::size_t scored_ = 0;
  };
};

}  // namespace pgolf
