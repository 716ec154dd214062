// Adam / AdamW with bias correction, as torch.optim.Adam(W):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p *= (1 - lr * wd)                                  (AdamW only)
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// One instance per parameter group; state mirrors the group's tensors.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "pgolf/nn/param_table.hpp"

namespace pgolf {

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled (AdamW) when > 0
};

template <class T>
class Adam {
 public:
  template <std::size_t N>
  Adam(const std::array<ParamInfo, N>& table, OptimGroup group, AdamOptions options) : options_(options) {
    for (const auto& p : table)
      if (p.group == group) params_.push_back(p);
    std::size_t total = 0;
    for (const auto& p : params_) total += p.numel();
    m_.assign(total, T(0));
    v_.assign(total, T(0));
  }

  bool empty() const { return params_.empty(); }
  long long steps_taken() const { return t_; }
  std::span<const T> first_moment() const { return m_; }
  std::span<const T> second_moment() const { return v_; }
  // Mutable state, for checkpoints.
  std::span<T> first_moment() { return m_; }
  std::span<T> second_moment() { return v_; }
  void set_steps_taken(long long t) { t_ = t; }

  void step(std::span<T> params, std::span<const T> grads, double lr) {
    ++t_;
    const double bc1 = 1.0 - std::pow(options_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(options_.beta2, double(t_));
    const T b1 = T(options_.beta1), b2 = T(options_.beta2);
    const T step_size = T(lr / bc1), sqrt_bc2 = T(std::sqrt(bc2)), eps = T(options_.eps);
    const T decay = T(1.0 - lr * options_.weight_decay);
    std::size_t at = 0;
    for (const auto& p : params_) {
      T* w = params.data() + p.offset;
      const T* g = grads.data() + p.offset;
      T* m = m_.data() + at;
      T* v = v_.data() + at;
      at += p.numel();
      for (std::size_t i = 0; i < p.numel(); ++i) {
        m[i] = b1 * m[i] + (T(1) - b1) * g[i];
        v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
        w[i] = w[i] * decay - step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
      }
    }
  }

 private:
  AdamOptions options_;
  std::vector<ParamInfo> params_;
  std::vector<T> m_, v_;
  long long t_ = 0;
};

}  // namespace pgolf
