// Muon (MomentUm Orthogonalized by Newton-Schulz) for the 2-D block matrices, as the reference:
//   buf = mu * buf + G;  U = G + mu * buf (Nesterov)
//   [MuonEq-R] U_i /= max(||U_i||, 1e-7) per row
//   X = NS5(U / (||U||_F + 1e-7)), quintic (3.4445, -4.7750, 2.0315), on the wide orientation
//     [Polar Express] X = U / (1.02 ||U||_F + 1e-6), then a different (a, b, c) per iteration
//   X *= sqrt(max(1, rows / cols));  W *= (1 - lr * wd);  W -= lr * X
// The CPU reference runs Newton-Schulz in the parameter precision by default; the reference trainer
// runs it in bf16 on the GPU, and so does the CUDA backend. ns_bf16 gives the CPU that behaviour:
// the normalised input, X X^T, B and each new X are rounded to bf16 (round to nearest even), the
// products accumulate and the coefficients stay in full precision, as cuBLAS with fp32 accumulation
// and a fused epilogue computes them (optim/cuda/muon.cuh rounds at the same points).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/ops/cpu/blas.hpp"

namespace pgolf {

struct MuonOptions {
  double momentum = 0.95;
  int ns_steps = 5;
  bool nesterov = true;
  double weight_decay = 0.0;  // decoupled, scaled by the (scheduled) learning rate
  bool row_normalize = false;  // MuonEq-R
  bool ns_bf16 = false;        // Newton-Schulz rounded to bf16 (the CUDA backend always is)
  bool polar_express = false;  // per-iteration Polar Express coefficients instead of the fixed quintic
};

// Polar Express (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932): the coefficients the newest
// records use, optimised for 5 iterations with safety factor 2e-2 and cushion 2; the 1.02 of the
// input normalisation is that safety factor. Iterations past the fifth repeat the last tuple.
inline constexpr double kPolarExpress[5][3] = {
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
};
// The (a, b, c) of Newton-Schulz iteration `step` (0-based).
struct NsCoefficients {
  double a, b, c;
};
inline NsCoefficients ns_coefficients(int step, bool polar_express) {
  if (!polar_express) return {3.4445, -4.7750, 2.0315};
  const auto& k = kPolarExpress[std::min(step, 4)];
  return {k[0], k[1], k[2]};
}
// The input normalisation X = G / (scale ||G||_F + eps).
struct NsNormalisation {
  double scale, eps;
};
inline NsNormalisation ns_normalisation(bool polar_express) {
  return polar_express ? NsNormalisation{1.02, 1e-6} : NsNormalisation{1.0, 1e-7};
}

// x rounded to the nearest bf16 value (ties to even), returned as float; NaN stays NaN.
inline float round_to_bf16(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return x;
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xffff0000u);
}

// Quintic Newton-Schulz orthogonalisation of G [rows, cols] into out (may alias G); bf16: round the
// iterates to bf16 as the GPU does; polar_express: the Polar Express coefficients and normalisation.
template <class T>
void newton_schulz5(const T* G, int rows, int cols, int steps, T* out, bool bf16 = false, bool polar_express = false) {
  const bool transposed = rows > cols;
  const int r = transposed ? cols : rows, k = transposed ? rows : cols;  // X is [r, k], r <= k
  std::vector<T> X(std::size_t(r) * k), A(std::size_t(r) * r), B(std::size_t(r) * r), Y(std::size_t(r) * k);
  double ss = 0;
  for (std::size_t i = 0; i < std::size_t(rows) * cols; ++i) ss += double(G[i]) * double(G[i]);
  const NsNormalisation nrm = ns_normalisation(polar_express);
  const T inv = T(1.0 / (nrm.scale * std::sqrt(ss) + nrm.eps));
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const T v = G[std::size_t(i) * cols + j] * inv;
      if (transposed) X[std::size_t(j) * k + i] = v;
      else X[std::size_t(i) * k + j] = v;
    }
  auto round = [bf16](std::vector<T>& v) {
    if (bf16)
      for (T& e : v) e = T(round_to_bf16(float(e)));
  };
  round(X);
  for (int s = 0; s < steps; ++s) {
    const NsCoefficients co = ns_coefficients(s, polar_express);
    const T a = T(co.a), b = T(co.b), c = T(co.c);
    ops::cpu::gemm<T>(false, true, r, r, k, T(1), X.data(), k, X.data(), k, T(0), A.data(), r);  // A = X X^T
    round(A);
    B = A;
    ops::cpu::gemm<T>(false, false, r, r, r, c, A.data(), r, A.data(), r, b, B.data(), r);     // B = bA + cAA
    round(B);
    Y = X;
    ops::cpu::gemm<T>(false, false, r, k, r, T(1), B.data(), r, X.data(), k, a, Y.data(), k);  // X = aX + BX
    round(Y);
    X.swap(Y);
  }
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j)
      out[std::size_t(i) * cols + j] = transposed ? X[std::size_t(j) * k + i] : X[std::size_t(i) * k + j];
}

// Data-parallel Muon, split by matrix as the reference splits it: each of `world` ranks
// orthogonalises only the matrices it owns, and `sum` (an all-reduce over the ranks) completes a
// buffer each rank filled at its own matrices only. Every rank still updates the whole momentum
// (elementwise, cheap, the same on every rank), so checkpoints need no gather, and since x + 0 + ... = x
// exactly, every rank applies bit for bit the update one process computes.
// On the CUDA backend (optim/cuda/muon.cuh) the buffer is in device memory and in bf16 (T = the
// bf16 type, as the reference's), the values Newton-Schulz gave: half the bytes of fp32, still exact.
template <class T>
struct MuonShard {
  int rank = 0, world = 1;
  std::function<void(std::span<T>)> sum;
};

// Which of `world` ranks orthogonalises each matrix (in table order): largest Newton-Schulz cost
// first (rows * cols * min(rows, cols)), each to the least-loaded rank, so ranks finish together.
// Both backends split by this rule, so a checkpoint's run resumes on either.
inline std::vector<int> muon_owners(const std::vector<ParamInfo>& matrices, int world) {
  PGOLF_CHECK(world >= 1, "Muon: world size ", world);
  std::vector<std::size_t> order(matrices.size());
  for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
  auto cost = [&](std::size_t k) { return double(matrices[k].numel()) * std::min(matrices[k].rows, matrices[k].cols); };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return cost(a) > cost(b); });
  std::vector<double> load(std::size_t(world), 0.0);
  std::vector<int> owners(matrices.size(), 0);
  for (const std::size_t k : order) {
    const auto r = std::size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owners[k] = int(r);
    load[r] += cost(k);
  }
  return owners;
}

// Muon over every muon_matrix row of a parameter table; momentum buffers mirror the parameters.
template <class T>
class Muon {
 public:
  template <std::size_t N>
  Muon(const std::array<ParamInfo, N>& table, MuonOptions options) : options_(options) {
    for (const auto& p : table)
      if (p.group == OptimGroup::muon_matrix) {
        PGOLF_CHECK(p.rank == 2, "Muon: parameter ", p.name.c_str(), " is not a matrix");
        params_.push_back(p);
      }
    std::size_t total = 0;
    for (const auto& p : params_) total += p.numel();
    buf_.assign(total, T(0));
  }

  void set_momentum(double m) { options_.momentum = m; }
  const MuonOptions& options() const { return options_; }
  std::span<const T> momentum_buffer() const { return buf_; }
  std::span<T> momentum_buffer() { return buf_; }

  void step(std::span<T> params, std::span<const T> grads, double lr) {
    std::vector<T> U;
    std::size_t at = 0;
    for (const auto& p : params_) {
      U.resize(p.numel());
      orthogonalised_update(p, grads, at, U.data());
      apply(p, params, lr, U.data());
      at += p.numel();
    }
  }

  // The same step split over the ranks of `shard` (see MuonShard): bit for bit step()'s result.
  void step(std::span<T> params, std::span<const T> grads, double lr, const MuonShard<T>& shard) {
    PGOLF_CHECK(shard.world >= 1 && shard.rank >= 0 && shard.rank < shard.world && shard.sum,
                "Muon: shard rank ", shard.rank, " of world ", shard.world);
    if (shard.world == 1) return step(params, grads, lr);
    const std::vector<int>& own = owners(shard.world);
    std::vector<T> U(buf_.size());
    std::size_t at = 0;
    for (std::size_t k = 0; k < params_.size(); ++k) {
      if (own[k] == shard.rank) orthogonalised_update(params_[k], grads, at, U.data() + at);
      else momentum_only(params_[k], grads, at);
      at += params_[k].numel();
    }
    shard.sum(std::span<T>(U));
    at = 0;
    for (const auto& p : params_) {
      apply(p, params, lr, U.data() + at);
      at += p.numel();
    }
  }

  // Which rank orthogonalises matrix k on `world` ranks (muon_owners).
  const std::vector<int>& owners(int world) {
    if (owners_world_ != world) owners_ = muon_owners(params_, world), owners_world_ = world;
    return owners_;
  }

 private:
  // The momentum of matrix p (at offset `at` of the buffer) advanced by its gradient.
  void momentum_only(const ParamInfo& p, std::span<const T> grads, std::size_t at) {
    const T mu = T(options_.momentum);
    const T* G = grads.data() + p.offset;
    T* buf = buf_.data() + at;
    for (std::size_t i = 0; i < p.numel(); ++i) buf[i] = mu * buf[i] + G[i];
  }
  // The momentum advanced, then U := the orthogonalised (Nesterov) update of matrix p.
  void orthogonalised_update(const ParamInfo& p, std::span<const T> grads, std::size_t at, T* U) {
    const T mu = T(options_.momentum);
    const std::size_t n = p.numel();
    const T* G = grads.data() + p.offset;
    T* buf = buf_.data() + at;
    for (std::size_t i = 0; i < n; ++i) {
      buf[i] = mu * buf[i] + G[i];
      U[i] = options_.nesterov ? G[i] + mu * buf[i] : buf[i];
    }
    if (options_.row_normalize)
      for (int r = 0; r < p.rows; ++r) {
        T* row = U + std::size_t(r) * p.cols;
        T ss = 0;
        for (int j = 0; j < p.cols; ++j) ss += row[j] * row[j];
        const T s = T(1) / std::max(std::sqrt(ss), T(1e-7));
        for (int j = 0; j < p.cols; ++j) row[j] *= s;
      }
    newton_schulz5(U, p.rows, p.cols, options_.ns_steps, U, options_.ns_bf16, options_.polar_express);
  }
  void apply(const ParamInfo& p, std::span<T> params, double lr, const T* U) const {
    T* W = params.data() + p.offset;
    const T shape = T(std::sqrt(std::max(1.0, double(p.rows) / double(p.cols))));
    const T decay = T(1.0 - lr * options_.weight_decay);
    for (std::size_t i = 0; i < p.numel(); ++i) W[i] = W[i] * decay - T(lr) * shape * U[i];
  }

  MuonOptions options_;
  std::vector<ParamInfo> params_;
  std::vector<T> buf_;
  std::vector<int> owners_;
  int owners_world_ = 0;
};

}  // namespace pgolf
