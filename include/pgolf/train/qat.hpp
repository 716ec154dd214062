// Late QAT (TECHNIQUES.md 4.14): the Muon matrices are fake-quantised for the forward and backward
// of a step, and the optimizer applies the gradient taken at the quantised weights to the master
// weights (the straight-through estimator, dL/dW := dL/dW_q). The quantiser is the export's
// per-row symmetric one at qat_bits:
//   Qmax = 2^(bits-1) - 1;  s_r = max(max_j |W_rj| / Qmax, 1 / Qmax)
//   Q = clamp(round(W / s_r), -(Qmax + 1), Qmax);  W_q = Q s_r
// round is to nearest, ties to even (as torch.round and CUDA's rintf). The CUDA version
// (train/cuda/qat.cuh) runs the same formula in fp32, one thread block per row.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// W [rows, cols] fake-quantised per row into out (may alias W).
template <class T>
void fake_quantize_rows(const T* W, int rows, int cols, int bits, T* out) {
  PGOLF_CHECK(bits >= 2 && bits <= 8, "fake_quantize_rows: bits must be in [2, 8], got ", bits);
  const T qmax = T((1 << (bits - 1)) - 1);
  for (int r = 0; r < rows; ++r) {
    const T* w = W + std::size_t(r) * cols;
    T* o = out + std::size_t(r) * cols;
    T amax = 0;
    for (int j = 0; j < cols; ++j) amax = std::max(amax, std::abs(w[j]));
    const T s = std::max(amax / qmax, T(1) / qmax);
    for (int j = 0; j < cols; ++j) o[j] = std::clamp(T(std::nearbyint(w[j] / s)), -(qmax + 1), qmax) * s;
  }
}

// Fake quantisation of every muon_matrix tensor of a parameter table, keeping the master weights.
template <class T>
class FakeQuant {
 public:
  template <std::size_t N>
  explicit FakeQuant(const std::array<ParamInfo, N>& table) {
    std::size_t total = 0;
    for (const auto& p : table)
      if (p.group == OptimGroup::muon_matrix) {
        params_.push_back(p);
        total += p.numel();
      }
    master_.resize(total);
  }

  // Saves the master weights and overwrites them with their fake-quantised values.
  void apply(std::span<T> params, int bits) {
    PGOLF_CHECK(!applied_, "FakeQuant::apply: the weights are already quantised (restore() first)");
    std::size_t at = 0;
    for (const auto& p : params_) {
      T* W = params.data() + p.offset;
      std::copy(W, W + p.numel(), master_.begin() + std::ptrdiff_t(at));
      at += p.numel();
      fake_quantize_rows(W, p.rows, p.cols, bits, W);
    }
    applied_ = true;
  }
  // Puts the master weights back.
  void restore(std::span<T> params) {
    if (!applied_) return;
    std::size_t at = 0;
    for (const auto& p : params_) {
      std::copy(master_.begin() + std::ptrdiff_t(at), master_.begin() + std::ptrdiff_t(at + p.numel()),
                params.data() + p.offset);
      at += p.numel();
    }
    applied_ = false;
  }
  bool applied() const { return applied_; }

 private:
  std::vector<ParamInfo> params_;
  std::vector<T> master_;
  bool applied_ = false;
};

}  // namespace pgolf
