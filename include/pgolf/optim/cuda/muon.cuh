// Muon on the GPU: the CPU reference's update (optim/muon.hpp) with Newton-Schulz in bf16 through
// cuBLASLt, batched over the matrices of equal shape (the parameter table fixes them at compile
// time: a 9-block baseline has four shapes, so each NS iteration is 3 batched products per shape
// rather than 3 per matrix).
//   1. one launch over all matrices: buf = mu*buf + G;  U = G + mu*buf (Nesterov)   (fp32)
//      [MuonEq-R] one warp per row: U_i /= max(||U_i||, 1e-7)
//   2. one block per matrix: ||U||_F in a fixed order
//   3. per shape: X = bf16(U / (||U|| + 1e-7)), transposed to the wide orientation, packed [count, r, k]
//      (Polar Express: U / (1.02 ||U|| + 1e-6))
//   4. per shape, ns_steps times: A = X X^T;  B = b*A + c*A A;  X = a*X + B X   (bf16, fp32 accumulate;
//      (a, b, c) per iteration from ns_coefficients(), the CPU's table)
//   5. per shape: W = W*(1 - lr*wd) - lr*sqrt(max(1, rows/cols)) * X (untransposed)
// The momentum buffer is packed in table order as the CPU optimizer's, so checkpoints move between
// backends.
// Data parallel (step with a MuonShard, as the records split it): every rank advances the whole
// momentum (elementwise), packs and orthogonalises only the matrices muon_owners() gives it (a smaller
// batch per shape), copies those updates into a bf16 buffer R (zero elsewhere), and one all-reduce of
// R (in bf16, as the reference's updates_flat: half the bytes of fp32) completes it on every rank;
// step 5 then reads R. x + 0 is exact, so every rank applies the same bits, and the bits a whole step
// gives wherever the batched products give each matrix the same result whatever the batch count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/gemm.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/optim/cuda/adam.cuh"
#include "pgolf/optim/muon.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::cuda {

namespace detail {

__global__ inline void muon_momentum_kernel(const Segment* __restrict__ segs, const float* __restrict__ g,
                                            float* __restrict__ buf, float* __restrict__ U, float mu, bool nesterov) {
  const Segment s = segs[blockIdx.y];
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < s.n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float gi = g[s.param + i];
    const float b = mu * buf[s.state + i] + gi;
    buf[s.state + i] = b;
    U[s.state + i] = nesterov ? gi + mu * b : b;
  }
}

// MuonEq-R: each row of U divided by max(its norm, 1e-7); one warp per row, grid y = matrix.
__global__ inline void muon_row_normalize_kernel(const Segment* __restrict__ segs, float* __restrict__ U) {
  const Segment s = segs[blockIdx.y];
  const std::size_t rows = s.n / std::size_t(s.cols);
  const int lane = threadIdx.x % 32;
  for (std::size_t r = std::size_t(blockIdx.x) * ops::cuda::kWarpsPerBlock + threadIdx.x / 32; r < rows;
       r += std::size_t(gridDim.x) * ops::cuda::kWarpsPerBlock) {
    float* row = U + s.state + r * s.cols;
    float ss = 0.f;
    for (int c = lane; c < s.cols; c += 32) ss += row[c] * row[c];
    const float inv = 1.f / fmaxf(sqrtf(ops::cuda::warp_sum(ss)), 1e-7f);
    for (int c = lane; c < s.cols; c += 32) row[c] *= inv;
  }
}

__global__ inline void sumsq_kernel(const Segment* __restrict__ segs, const float* __restrict__ U,
                                    float* __restrict__ out) {
  const Segment s = segs[blockIdx.x];
  float acc = 0.f;
  for (std::size_t i = threadIdx.x; i < s.n; i += blockDim.x) acc += U[s.state + i] * U[s.state + i];
  acc = ops::cuda::block_sum(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

// X[m] = bf16(U_m / (norm_scale ||U_m|| + norm_eps)), transposed when rows > cols. members: matrix
// indices of the shape.
__global__ inline void muon_pack_kernel(const Segment* __restrict__ segs, const int* __restrict__ members,
                                        const float* __restrict__ U, const float* __restrict__ sumsq, int rows,
                                        int cols, bool transpose, ops::cuda::bf16* __restrict__ X, float norm_scale,
                                        float norm_eps) {
  const std::size_t n = std::size_t(rows) * cols;
  const int m = members[blockIdx.y];
  const Segment s = segs[m];
  const float inv = 1.f / (norm_scale * sqrtf(sumsq[m]) + norm_eps);
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t r = i / cols, c = i % cols;
    const std::size_t dst = transpose ? c * rows + r : i;
    X[std::size_t(blockIdx.y) * n + dst] = __float2bfloat16_rn(U[s.state + i] * inv);
  }
}

__global__ inline void muon_apply_kernel(const Segment* __restrict__ segs, const int* __restrict__ members,
                                         const ops::cuda::bf16* __restrict__ X, int rows, int cols, bool transpose,
                                         float* __restrict__ W, float lr_shape, float decay) {
  const std::size_t n = std::size_t(rows) * cols;
  const Segment s = segs[members[blockIdx.y]];
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t r = i / cols, c = i % cols;
    const std::size_t src = transpose ? c * rows + r : i;
    float& w = W[s.param + i];
    w = w * decay - lr_shape * __bfloat162float(X[std::size_t(blockIdx.y) * n + src]);
  }
}

// R_m := the orthogonalised X[m] (untransposed), for the matrices in members.
__global__ inline void muon_unpack_kernel(const Segment* __restrict__ segs, const int* __restrict__ members,
                                          const ops::cuda::bf16* __restrict__ X, int rows, int cols, bool transpose,
                                          ops::cuda::bf16* __restrict__ R) {
  const std::size_t n = std::size_t(rows) * cols;
  const Segment s = segs[members[blockIdx.y]];
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t r = i / cols, c = i % cols;
    R[s.state + i] = X[std::size_t(blockIdx.y) * n + (transpose ? c * rows + r : i)];
  }
}

// muon_apply_kernel's update from R (a sharded step's all-reduced updates, untransposed).
__global__ inline void muon_apply_dense_kernel(const Segment* __restrict__ segs, const int* __restrict__ members,
                                               const ops::cuda::bf16* __restrict__ R, std::size_t n, float* __restrict__ W,
                                               float lr_shape, float decay) {
  const Segment s = segs[members[blockIdx.y]];
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    float& w = W[s.param + i];
    w = w * decay - lr_shape * __bfloat162float(R[s.state + i]);
  }
}

}  // namespace detail

class CudaMuon {
 public:
  template <std::size_t N>
  CudaMuon(const std::array<ParamInfo, N>& dev_table, MuonOptions options, Gemm& gemm) : options_(options), gemm_(gemm) {
    std::vector<Segment> segs;
    std::map<std::pair<int, int>, std::vector<int>> by_shape;
    std::size_t at = 0;
    for (const auto& p : dev_table)
      if (p.group == OptimGroup::muon_matrix) {
        PGOLF_CHECK(p.rank == 2, "Muon: parameter ", p.name.c_str(), " is not a matrix");
        by_shape[{p.rows, p.cols}].push_back(int(segs.size()));
        segs.push_back({p.offset, at, p.numel(), p.cols});
        matrix_info_.push_back(p);
        at += p.numel();
      }
    matrices_ = int(segs.size());
    if (segs.empty()) return;
    segs_ = DeviceBuffer<Segment>(segs.size());
    segs_.upload(segs);
    buf_ = DeviceBuffer<float>(at);
    buf_.fill_bytes(0);
    U_ = DeviceBuffer<float>(at);
    sumsq_ = DeviceBuffer<float>(segs.size());
    for (auto& [shape, members] : by_shape) {
      Group g;
      g.rows = shape.first;
      g.cols = shape.second;
      g.count = int(members.size());
      g.members = DeviceBuffer<int>(members.size());
      g.members.upload(members);
      g.host_members = members;
      const std::size_t r = std::min(g.rows, g.cols), k = std::max(g.rows, g.cols);
      g.X = DeviceBuffer<ops::cuda::bf16>(g.count * r * k);
      g.Y = DeviceBuffer<ops::cuda::bf16>(g.count * r * k);
      g.A = DeviceBuffer<ops::cuda::bf16>(g.count * r * r);
      g.B = DeviceBuffer<ops::cuda::bf16>(g.count * r * r);
      groups_.push_back(std::move(g));
    }
  }

  void set_momentum(double m) { options_.momentum = m; }
  const MuonOptions& options() const { return options_; }
  DeviceBuffer<float>& momentum_buffer() { return buf_; }
  const DeviceBuffer<float>& momentum_buffer() const { return buf_; }

  void step(DeviceParamSpan params, DeviceParamSpan grads, double lr) { step(params.data, grads.data, lr); }
  void step(float* params, const float* grads, double lr, cudaStream_t st = nullptr) {
    if (matrices_ == 0) return;
    advance(grads, st);
    for (Group& g : groups_) {
      pack(g, g.members.data(), g.count, st);
      newton_schulz(g, g.count, st);
      const dim3 grid(32, unsigned(g.count));
      detail::muon_apply_kernel<<<grid, 256, 0, st>>>(segs_.data(), g.members.data(), g.X.data(), g.rows, g.cols,
                                                      g.rows > g.cols, params, float(lr) * shape_factor(g),
                                                      float(1.0 - lr * options_.weight_decay));
      PGOLF_CUDA_CHECK_LAUNCH("muon_apply");
    }
  }

  // The same step split over the ranks of `shard` by matrix (see the top of this file); shard.sum
  // all-reduces a device buffer of bf16 over the ranks.
  using Shard = MuonShard<ops::cuda::bf16>;
  void step(DeviceParamSpan params, DeviceParamSpan grads, double lr, const Shard& shard) {
    step(params.data, grads.data, lr, shard);
  }
  void step(float* params, const float* grads, double lr, const Shard& shard, cudaStream_t st = nullptr) {
    PGOLF_CHECK(shard.world >= 1 && shard.rank >= 0 && shard.rank < shard.world && shard.sum,
                "Muon: shard rank ", shard.rank, " of world ", shard.world);
    if (shard.world == 1) return step(params, grads, lr, st);
    if (matrices_ == 0) return;
    own(shard.rank, shard.world);
    if (R_.size() != buf_.size()) R_ = DeviceBuffer<ops::cuda::bf16>(buf_.size());  // data-parallel runs only
    advance(grads, st);
    PGOLF_CUDA_CHECK(cudaMemsetAsync(R_.data(), 0, R_.size() * sizeof(ops::cuda::bf16), st));
    for (Group& g : groups_)
      if (g.own.size() > 0) {
        pack(g, g.own.data(), int(g.own.size()), st);
        newton_schulz(g, int(g.own.size()), st);
        detail::muon_unpack_kernel<<<dim3(32, unsigned(g.own.size())), 256, 0, st>>>(
            segs_.data(), g.own.data(), g.X.data(), g.rows, g.cols, g.rows > g.cols, R_.data());
        PGOLF_CUDA_CHECK_LAUNCH("muon_unpack");
      }
    shard.sum(std::span<ops::cuda::bf16>(R_.data(), R_.size()));
    for (Group& g : groups_) {
      detail::muon_apply_dense_kernel<<<dim3(32, unsigned(g.count)), 256, 0, st>>>(
          segs_.data(), g.members.data(), R_.data(), std::size_t(g.rows) * g.cols, params,
          float(lr) * shape_factor(g), float(1.0 - lr * options_.weight_decay));
      PGOLF_CUDA_CHECK_LAUNCH("muon_apply_dense");
    }
  }

  // How many matrices this rank orthogonalises in a sharded step on `world` ranks.
  int owned(int rank, int world) {
    own(rank, world);
    int n = 0;
    for (const Group& g : groups_) n += int(g.own.size());
    return n;
  }

 private:
  struct Group {
    int rows = 0, cols = 0, count = 0;
    DeviceBuffer<int> members;
    std::vector<int> host_members;
    DeviceBuffer<int> own;  // the members this rank orthogonalises in a sharded step
    DeviceBuffer<ops::cuda::bf16> X, Y, A, B;
  };

  static float shape_factor(const Group& g) {
    return float(std::sqrt(std::max(1.0, double(g.rows) / double(g.cols))));
  }

  // Steps 1-2: the momentum, U (MuonEq-R) and ||U|| of every matrix.
  void advance(const float* grads, cudaStream_t st) {
    detail::muon_momentum_kernel<<<dim3(32, unsigned(matrices_)), 256, 0, st>>>(
        segs_.data(), grads, buf_.data(), U_.data(), float(options_.momentum), options_.nesterov);
    PGOLF_CUDA_CHECK_LAUNCH("muon_momentum");
    if (options_.row_normalize) {
      detail::muon_row_normalize_kernel<<<dim3(16, unsigned(matrices_)), 32 * ops::cuda::kWarpsPerBlock, 0, st>>>(
          segs_.data(), U_.data());
      PGOLF_CUDA_CHECK_LAUNCH("muon_row_normalize");
    }
    detail::sumsq_kernel<<<unsigned(matrices_), 1024, 0, st>>>(segs_.data(), U_.data(), sumsq_.data());
    PGOLF_CUDA_CHECK_LAUNCH("muon_sumsq");
  }

  // Step 3 for `count` matrices of g (device indices `members`): X[0, count).
  void pack(Group& g, const int* members, int count, cudaStream_t st) {
    const NsNormalisation nrm = ns_normalisation(options_.polar_express);
    detail::muon_pack_kernel<<<dim3(32, unsigned(count)), 256, 0, st>>>(segs_.data(), members, U_.data(),
                                                                       sumsq_.data(), g.rows, g.cols, g.rows > g.cols,
                                                                       g.X.data(), float(nrm.scale), float(nrm.eps));
    PGOLF_CUDA_CHECK_LAUNCH("muon_pack");
  }

  // Step 4 over the first `count` packed matrices of g; the result in g.X.
  void newton_schulz(Group& g, int count, cudaStream_t st) {
    const int r = std::min(g.rows, g.cols), k = std::max(g.rows, g.cols);
    const long long rk = (long long)r * k, rr = (long long)r * r;
    const GemmShape xxt{.ta = false, .tb = true, .M = r, .N = r, .K = k, .lda = k, .ldb = k, .ldc = r,
                        .a = DType::bf16, .b = DType::bf16, .c = DType::bf16, .batch = count,
                        .stride_a = rk, .stride_b = rk, .stride_c = rr};
    const GemmShape aa{.ta = false, .tb = false, .M = r, .N = r, .K = r, .lda = r, .ldb = r, .ldc = r,
                       .a = DType::bf16, .b = DType::bf16, .c = DType::bf16, .batch = count,
                       .stride_a = rr, .stride_b = rr, .stride_c = rr};
    const GemmShape bx{.ta = false, .tb = false, .M = r, .N = k, .K = r, .lda = r, .ldb = k, .ldc = k,
                       .a = DType::bf16, .b = DType::bf16, .c = DType::bf16, .batch = count,
                       .stride_a = rr, .stride_b = rk, .stride_c = rk};
    for (int s = 0; s < options_.ns_steps; ++s) {
      const NsCoefficients co = ns_coefficients(s, options_.polar_express);
      const float a = float(co.a), b = float(co.b), c = float(co.c);
      gemm_.run(xxt, g.X.data(), g.X.data(), g.A.data(), 1.f, 0.f, st);                  // A = X X^T
      gemm_.run(aa, g.A.data(), g.A.data(), g.A.data(), g.B.data(), c, b, st);            // B = bA + cAA
      gemm_.run(bx, g.B.data(), g.X.data(), g.X.data(), g.Y.data(), 1.f, a, st);          // Y = aX + BX
      std::swap(g.X, g.Y);
    }
  }

  // Each group's members owned by `rank` of `world` (muon_owners), uploaded once per world.
  void own(int rank, int world) {
    if (own_rank_ == rank && own_world_ == world) return;
    const std::vector<int> owner = muon_owners(matrix_info_, world);
    for (Group& g : groups_) {
      std::vector<int> mine;
      for (const int m : g.host_members)
        if (owner[std::size_t(m)] == rank) mine.push_back(m);
      g.own = DeviceBuffer<int>(mine.size());
      if (!mine.empty()) g.own.upload(mine);
    }
    own_rank_ = rank, own_world_ = world;
  }

  MuonOptions options_;
  Gemm& gemm_;
  int matrices_ = 0;
  DeviceBuffer<Segment> segs_;
  DeviceBuffer<float> buf_, U_, sumsq_;
  DeviceBuffer<ops::cuda::bf16> R_;  // a split step's updates, all-reduced (allocated by the first)
  std::vector<Group> groups_;
  std::vector<ParamInfo> matrix_info_;  // in segment (table) order
  int own_rank_ = -1, own_world_ = 0;
};

}  // namespace pgolf::cuda
