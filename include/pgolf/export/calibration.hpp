// GPTQ calibration (TECHNIQUES.md 5.5): H = sum over calibration tokens of x x^T, divided by the
// number of calibration batches, for the input x of every product whose weight is a table row.
// Collected through the CPU product hook (ops/cpu/linear.hpp): a weight is identified by its offset
// in the model's flat parameter buffer, so every product reports without knowing names; a tied head
// reports the final norm's output against the embedding (the LM-head input, as the records do), and
// a shared block's matrices see every virtual use.
// On the CUDA backend (CudaHessianCollector, below, nvcc only) the products report through
// Cuda::linear's hook instead: each weight's H accumulates on the device (one bf16 x bf16 -> fp32 product
// per call, the inputs as the GPU model computes them), and a fused product over several table rows
// (the packed q/k/v) gives its H to every row it covers.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/export/artifact.hpp"
#include "pgolf/ops/cpu/blas.hpp"
#include "pgolf/ops/cpu/linear.hpp"

namespace pgolf {

// sum / batches, made exactly symmetric (a float product rounds each half apart); sum is n x n.
inline std::vector<double> finish_hessian(std::vector<double> sum, std::size_t n, long long batches) {
  PGOLF_CHECK(sum.size() == n * n, "finish_hessian: ", sum.size(), " values for a ", n, " x ", n, " matrix");
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < a; ++b) sum[a * n + b] = sum[b * n + a] = 0.5 * (sum[a * n + b] + sum[b * n + a]);
  for (double& v : sum) v /= double(batches);
  return sum;
}

// The wanted table rows a product reads: its weight starts at element `offset` of a buffer laid out
// as `layout` and spans out x in elements; every 2-D row with `in` columns inside that span (a fused
// product covers several: the packed q, k, v).
template <std::size_t N>
std::vector<int> rows_read_by(const std::array<ParamInfo, N>& layout, const std::vector<bool>& wanted,
                              std::size_t offset, int in, int out) {
  std::vector<int> rows;
  const std::size_t end = offset + std::size_t(in) * std::size_t(out);
  for (std::size_t t = 0; t < N; ++t)
    if (wanted[t] && layout[t].rank == 2 && layout[t].cols == in && layout[t].offset >= offset &&
        layout[t].offset + layout[t].numel() <= end)
      rows.push_back(int(t));
  return rows;
}

template <class T>
class HessianCollector final : public ops::cpu::ProductInputObserver {
 public:
  // params: the live parameter buffer the model's products read; wanted[t]: collect table row t.
  template <std::size_t N>
  HessianCollector(const std::array<ParamInfo, N>& table, std::span<const T> params, const std::vector<bool>& wanted)
      : base_(params.data()), size_(params.size()), sums_(N), cols_(N, 0) {
    PGOLF_CHECK(params.size() == table_size(table) && wanted.size() == N, "HessianCollector: ", params.size(),
                " parameters and ", wanted.size(), " flags, the table needs ", table_size(table), " and ", N);
    for (std::size_t t = 0; t < N; ++t)
      if (wanted[t] && table[t].rank == 2) {
        by_offset_[table[t].offset] = int(t);
        cols_[t] = table[t].cols;
      }
  }
  ~HessianCollector() override { stop(); }
  HessianCollector(const HessianCollector&) = delete;
  HessianCollector& operator=(const HessianCollector&) = delete;

  void start() {
    PGOLF_CHECK(ops::cpu::product_input_observer() == nullptr, "HessianCollector: another collector is installed");
    ops::cpu::product_input_observer() = this;
  }
  void stop() {
    if (ops::cpu::product_input_observer() == this) ops::cpu::product_input_observer() = nullptr;
  }
  void end_batch() { ++batches_; }
  long long batches() const { return batches_; }

  void observe(const float* W, const float* x, int N, int in) override { take(W, x, N, in); }
  void observe(const double* W, const double* x, int N, int in) override { take(W, x, N, in); }

  // H per table row: sum x x^T / batches (empty where nothing was collected).
  TensorHessians hessians() const {
    PGOLF_CHECK(batches_ > 0, "GPTQ calibration ran no batches");
    TensorHessians out(sums_.size());
    for (std::size_t t = 0; t < sums_.size(); ++t)
      if (!sums_[t].empty()) out[t] = finish_hessian(sums_[t], std::size_t(cols_[t]), batches_);
    return out;
  }

 private:
  template <class U>
  void take(const U* W, const U* x, int N, int in) {
    if constexpr (!std::is_same_v<U, T>) {
      return;  // another model's products
    } else {
      if (W < base_ || W >= base_ + size_) return;
      const auto it = by_offset_.find(std::size_t(W - base_));
      if (it == by_offset_.end() || cols_[std::size_t(it->second)] != in || N <= 0) return;
      const int t = it->second;
      // A product run inside an OpenMP region (several at once) accumulates one at a time.
#pragma omp critical(pgolf_hessian_collector)
      {
        scratch_.assign(std::size_t(in) * in, T(0));
        ops::cpu::gemm<T>(true, false, in, in, N, T(1), x, in, x, in, T(0), scratch_.data(), in);  // x^T x
        std::vector<double>& H = sums_[std::size_t(t)];
        if (H.empty()) H.assign(scratch_.size(), 0.0);
        for (std::size_t i = 0; i < H.size(); ++i) H[i] += double(scratch_[i]);
      }
    }
  }

  const T* base_;
  std::size_t size_;
  std::vector<std::vector<double>> sums_;
  std::vector<int> cols_;
  std::unordered_map<std::size_t, int> by_offset_;  // table offset -> row
  std::vector<T> scratch_;
  long long batches_ = 0;
};

// Which table rows GPTQ needs a Hessian for under these options.
template <std::size_t N>
std::vector<bool> gptq_rows(const std::array<ParamInfo, N>& table, const ExportOptions& o) {
  std::vector<bool> want(N, false);
  for (std::size_t t = 0; t < N; ++t)
    want[t] = quantised_rows(table[t], o) && o.choice(tensor_class(table[t])).quantiser == Quantiser::gptq;
  return want;
}

}  // namespace pgolf

#ifdef __CUDACC__
#include <map>

#include "pgolf/backend/cuda/backend.cuh"

namespace pgolf {

// GPTQ calibration on the GPU: every weight the model's products read (Cuda::linear's hook) gets
// H += X^T X on the device (bf16 inputs, fp32 sums; a shared weight sums over its uses); hessians()
// downloads them and hands each to the wanted table rows the product covers.
template <std::size_t N>
class CudaHessianCollector final : public cuda::ProductInputObserver {
 public:
  // device_table: the layout of the model's weight buffer, whose start is `weights`.
  CudaHessianCollector(const std::array<ParamInfo, N>& device_table, const Cuda::bf16* weights,
                       std::vector<bool> wanted)
      : dev_(device_table), base_(weights), wanted_(std::move(wanted)) {
    PGOLF_CHECK(wanted_.size() == N, "CudaHessianCollector: ", wanted_.size(), " flags for ", N, " table rows");
  }
  ~CudaHessianCollector() override { stop(); }
  CudaHessianCollector(const CudaHessianCollector&) = delete;
  CudaHessianCollector& operator=(const CudaHessianCollector&) = delete;

  void start() {
    PGOLF_CHECK(cuda::product_input_observer() == nullptr, "CudaHessianCollector: another collector is installed");
    cuda::product_input_observer() = this;
  }
  void stop() {
    if (cuda::product_input_observer() == this) cuda::product_input_observer() = nullptr;
  }
  void end_batch() { ++batches_; }
  long long batches() const { return batches_; }

  void observe(cuda::Gemm& gemm, const Cuda::bf16* W, const Cuda::bf16* X, int tokens, int in, int out) override {
    if (W < base_ || tokens <= 0) return;
    const std::size_t offset = std::size_t(W - base_);
    auto it = sums_.find(offset);
    if (it == sums_.end()) {
      if (rows_read_by(dev_, wanted_, offset, in, out).empty()) return;  // no wanted row: not collected
      it = sums_.emplace(offset, Sum{in, out, cuda::DeviceBuffer<float>(std::size_t(in) * in)}).first;
      it->second.h.fill_bytes(0);
    }
    PGOLF_CHECK(it->second.in == in, "CudaHessianCollector: a weight read with ", in, " and ", it->second.in, " inputs");
    gemm.run({.ta = true, .tb = false, .M = in, .N = in, .K = tokens, .lda = in, .ldb = in, .ldc = in,
              .a = cuda::DType::bf16, .b = cuda::DType::bf16, .c = cuda::DType::f32},
             X, X, it->second.h.data(), 1.f, 1.f);  // H += X^T X
  }

  // H per table row: sum x x^T / batches (empty where nothing was collected).
  TensorHessians hessians() const {
    PGOLF_CHECK(batches_ > 0, "GPTQ calibration ran no batches");
    PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
    TensorHessians out(N);
    for (const auto& [offset, sum] : sums_) {
      std::vector<float> h(sum.h.size());
      sum.h.download(h);
      const std::vector<double> H = finish_hessian(std::vector<double>(h.begin(), h.end()), std::size_t(sum.in), batches_);
      for (const int t : rows_read_by(dev_, wanted_, offset, sum.in, sum.out)) out[std::size_t(t)] = H;
    }
    return out;
  }

 private:
  struct Sum {
    int in = 0, out = 0;
    cuda::DeviceBuffer<float> h;
  };
  std::array<ParamInfo, N> dev_;
  const Cuda::bf16* base_;
  std::vector<bool> wanted_;
  std::map<std::size_t, Sum> sums_;  // weight offset -> its H (device)
  long long batches_ = 0;
};

}  // namespace pgolf
#endif
