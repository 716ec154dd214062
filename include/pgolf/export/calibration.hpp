// GPTQ calibration (TECHNIQUES.md 5.5): H = sum over calibration tokens of x x^T, divided by the
// number of calibration batches, for the input x of every product whose weight is a table row.
// Collected through the CPU product hook (ops/cpu/linear.hpp): a weight is identified by its offset
// in the model's flat parameter buffer, so every product reports without knowing names; a tied head
// reports the final norm's output against the embedding (the LM-head input, as the records do), and
// a shared block's matrices see every virtual use.
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
    for (std::size_t t = 0; t < sums_.size(); ++t) {
      if (sums_[t].empty()) continue;
      out[t] = sums_[t];
      const std::size_t n = std::size_t(cols_[t]);
      for (std::size_t a = 0; a < n; ++a)  // exactly symmetric (the float products round each half apart)
        for (std::size_t b = 0; b < a; ++b)
          out[t][a * n + b] = out[t][b * n + a] = 0.5 * (out[t][a * n + b] + out[t][b * n + a]);
      for (double& v : out[t]) v /= double(batches_);
    }
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
