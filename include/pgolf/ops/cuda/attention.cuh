// Causal self-attention with grouped KV heads on the GPU, forward and backward.
//
// Layout: q [B, H, T, Hd], k, v [B, G, T, Hd] (bf16, from qk_norm_rope). For one (batch, KV head)
// pair its r = H/G query heads are contiguous, so the pair is a single [r*T, Hd] matrix against a
// [T, Hd] key matrix, and every product below is one strided-batched cuBLASLt call over a chunk of
// pairs. With c_h = gain_h / sqrt(Hd) for the row's head h:
//   forward:  S = Q K^T (fp32);  P = softmax(c_h S) under the causal mask (bf16), lse saved;  Y = P V
//   backward: S = Q K^T again;  P = exp(c_h S - lse);  dV = P^T dY;  dP = dY V^T (fp32);
//             dZ = P * (dP - rowsum(P * dP));  dQ = (c_h dZ) K;  dK = (c_h dZ)^T Q;
//             d gain_h = sum over the head's rows of sum_j dZ S / sqrt(Hd)
// The gain's gradient is a sum with heavy cancellation (each row of dZ sums to zero), so it is
// taken from the fp32 dZ and S inside the kernel, before dZ is rounded to bf16 for the products,
// and the row term rowsum(P * dP) (= rowsum(dY * Y)) comes from the same fp32 P and dP rather than
// from the bf16 output, so the two sides of that cancellation agree.
// Only lse [B, H, T] is saved (O(T), as flash attention); the score matrices live in a workspace
// bounded by a chunk of pairs. The products run per tile of query rows (T/4 by default) against
// only the keys up to the tile's end, skipping most of the masked triangle; scores still round-trip
// through memory, which is what bounds this version (bench/results). A fused tensor-core kernel
// that keeps scores on chip is the next step. Its floor is the causal flops
// (2 * 2*B*H*T*T*Hd / 2 forward) over the bf16 tensor rate.
// Document masking (set_doc_starts): the kernels also mask keys before the row's document start
// (ops/cpu/attention.hpp has the semantics); the products still cover the whole causal triangle.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/gemm.hpp"
#include "pgolf/ops/cuda/common.cuh"

namespace pgolf::ops::cuda {

struct AttentionDims {
  int B, T, H, G, Hd;
  int group() const { return H / G; }
  __host__ __device__ std::size_t tokens() const { return std::size_t(B) * T; }
  std::size_t pairs() const { return std::size_t(B) * G; }
};

namespace detail {

// The score rows of a chunk of (batch, KV head) pairs starting at pair p0, one warp per row.
// Row i of a pair is query position t = i % T of head g*r + (i / T); keys j > t are masked, and
// the products read a row's scores up to the end of its query tile, so the kernels write that far.
struct ScoreRows {
  std::size_t rows, p0;
  int T, tile, r, G;
  const float* gain;
  float inv_sqrt_d;
  const std::int32_t* doc_start;  // [B*T] or nullptr

  struct Row {
    std::size_t row;
    int lane, t, end, lo;  // keys [lo, t] are visible
    float scale;  // gain_h / sqrt(Hd)
  };
  __device__ bool of_this_warp(Row& w) const {
    w.row = std::size_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (w.row >= rows) return false;
    const std::size_t rT = std::size_t(r) * T;
    w.lane = threadIdx.x % 32;
    w.t = int(w.row % T);
    w.end = min(T, (w.t / tile + 1) * tile);
    w.scale = gain[int((p0 + w.row / rT) % G) * r + int((w.row % rT) / T)] * inv_sqrt_d;
    w.lo = doc_start ? doc_start[(p0 + w.row / rT) / G * T + w.t] : 0;
    return true;
  }
  __device__ static bool visible(const Row& w, int j) { return j >= w.lo && j <= w.t; }
};

__global__ inline void causal_softmax_kernel(const float* __restrict__ S, ScoreRows sr, bf16* __restrict__ P,
                                             float* __restrict__ lse) {
  ScoreRows::Row w;
  if (!sr.of_this_warp(w)) return;
  const float* s = S + w.row * sr.T;
  float m = -INFINITY;
  for (int j = w.lo + w.lane; j <= w.t; j += 32) m = fmaxf(m, s[j] * w.scale);
  m = warp_max(m);
  float sum = 0.f;
  for (int j = w.lo + w.lane; j <= w.t; j += 32) sum += __expf(s[j] * w.scale - m);
  sum = warp_sum(sum);
  const float l = m + __logf(sum);
  if (w.lane == 0) lse[w.row] = l;
  bf16* p = P + w.row * sr.T;
  for (int j = w.lane; j < w.end; j += 32)
    p[j] = __float2bfloat16_rn(ScoreRows::visible(w, j) ? __expf(s[j] * w.scale - l) : 0.f);
}

__global__ inline void causal_probs_kernel(const float* __restrict__ S, ScoreRows sr, const float* __restrict__ lse,
                                           bf16* __restrict__ P) {
  ScoreRows::Row w;
  if (!sr.of_this_warp(w)) return;
  const float l = lse[w.row];
  for (int j = w.lane; j < w.end; j += 32) {
    const std::size_t e = w.row * sr.T + j;
    P[e] = __float2bfloat16_rn(ScoreRows::visible(w, j) ? __expf(S[e] * w.scale - l) : 0.f);
  }
}

// dZ = P * (dP - sum_j P dP) with P recomputed in fp32; writes c_h dZ (bf16) into dS and the row's
// sum_j dZ * S / sqrt(Hd) (its share of d gain).
__global__ inline void softmax_backward_kernel(const float* __restrict__ S, const float* __restrict__ dP, ScoreRows sr,
                                               const float* __restrict__ lse, bf16* __restrict__ dS,
                                               float* __restrict__ gain_part) {
  ScoreRows::Row w;
  if (!sr.of_this_warp(w)) return;
  const std::size_t base = w.row * sr.T;
  const float l = lse[w.row];
  float d = 0.f;
  for (int j = w.lo + w.lane; j <= w.t; j += 32) d += __expf(S[base + j] * w.scale - l) * dP[base + j];
  d = warp_sum(d);
  float acc = 0.f;
  for (int j = w.lane; j < w.end; j += 32) {
    const std::size_t e = base + j;
    float z = 0.f;
    if (ScoreRows::visible(w, j)) {
      const float p = __expf(S[e] * w.scale - l);
      z = p * (dP[e] - d);
      acc += z * S[e];
    }
    dS[e] = __float2bfloat16_rn(z * w.scale);
  }
  acc = warp_sum(acc);
  if (w.lane == 0) gain_part[w.row] = acc * sr.inv_sqrt_d;
}

// d gain_h += sum over b, t of part[b, h, t], in a fixed order (one block per head).
__global__ inline void head_sum_kernel(const float* __restrict__ part, int B, int H, int T, float* __restrict__ dgain) {
  const int h = blockIdx.x;
  float s = 0.f;
  for (int i = threadIdx.x; i < B * T; i += blockDim.x) {
    const int b = i / T, t = i % T;
    s += part[(std::size_t(b) * H + h) * T + t];
  }
  s = block_sum(s);
  if (threadIdx.x == 0) dgain[h] += s;
}

// [B, H, T, Hd] <-> tokens [B*T, H*Hd]: i walks the head-major layout; ToTokens picks the direction.
template <int Hd, bool ToTokens>
__global__ void relayout_kernel(const bf16* __restrict__ in, AttentionDims d, bf16* __restrict__ out) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.tokens() * d.H * Hd) return;
  const int e = int(i % Hd);
  const std::size_t rest = i / Hd;
  const int t = int(rest % d.T);
  const std::size_t bh = rest / d.T;
  const std::size_t tok = ((bh / d.H * d.T + t) * d.H + bh % d.H) * Hd + e;
  if constexpr (ToTokens) out[tok] = in[i];
  else out[i] = in[tok];
}

// One warp per row: each lane finds the last BOS in its chunk of positions, a warp max-scan carries
// the last BOS before the chunk in, and a second pass writes the starts.
__global__ inline void document_starts_kernel(const std::int32_t* __restrict__ ids, int B, int T, std::int32_t bos,
                                              std::int32_t* __restrict__ starts) {
  const int b = int(blockIdx.x) * kWarpsPerBlock + int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (b >= B) return;
  const int chunk = (T + 31) / 32, t0 = min(T, lane * chunk), t1 = min(T, t0 + chunk);
  const std::int32_t* row = ids + std::size_t(b) * T;
  int last = 0;  // 0: no BOS yet (a row's first document starts at 0 either way)
  for (int t = t0; t < t1; ++t)
    if (row[t] == bos) last = t;
  for (int off = 1; off < 32; off <<= 1) {  // inclusive max-scan over lanes
    const int o = __shfl_up_sync(0xffffffffu, last, off);
    if (lane >= off) last = max(last, o);
  }
  int start = __shfl_up_sync(0xffffffffu, last, 1);
  if (lane == 0) start = 0;
  for (int t = t0; t < t1; ++t) {
    if (row[t] == bos) start = t;
    starts[std::size_t(b) * T + t] = start;
  }
}

}  // namespace detail

// starts[b*T + t] := the last position s <= t of row b whose token is bos, 0 if none (the CPU's
// ops::cpu::document_starts); ids and starts on the device.
inline void document_starts(const std::int32_t* ids, int B, int T, std::int32_t bos, std::int32_t* starts,
                            cudaStream_t st = nullptr) {
  if (B <= 0 || T <= 0) return;
  detail::document_starts_kernel<<<row_blocks(std::size_t(B)), 32 * kWarpsPerBlock, 0, st>>>(ids, B, T, bos, starts);
  PGOLF_CUDA_CHECK_LAUNCH("document_starts");
}

template <int Hd>
class Attention {
 public:
  static constexpr int kDefaultQueryTiles = 4;  // the fastest of 1, 2, 4, 8, 16 at T = 1024 on an H100

  // workspace_bytes bounds the score buffers (fp32 S and dP, bf16 P per pair: 10 * r*T*T bytes).
  // query_tiles: how many tiles of query rows a sequence is cut into for the causal products.
  Attention(pgolf::cuda::Gemm& gemm, AttentionDims d, std::size_t workspace_bytes = std::size_t(4) << 30,
            int query_tiles = kDefaultQueryTiles)
      : gemm_(gemm), d_(d) {
    PGOLF_CHECK(d.Hd == Hd, "Attention: head dim ", d.Hd, " but the kernels were built for ", Hd);
    PGOLF_CHECK(d.G > 0 && d.H % d.G == 0, "Attention: ", d.H, " query heads do not divide into ", d.G, " KV heads");
    PGOLF_CHECK(d.T % 8 == 0, "Attention: the CUDA path needs the sequence length to be a multiple of 8, got ", d.T);
    PGOLF_CHECK(query_tiles >= 1, "Attention: query_tiles must be at least 1, got ", query_tiles);
    // n tiles skip (n-1)/(2n) of the score matrix and cost n launches per head and product.
    tile_ = std::max(8, (d.T / query_tiles + 7) / 8 * 8);
    const std::size_t per_pair = std::size_t(d.group()) * d.T * d.T * (2 * sizeof(float) + sizeof(bf16));
    chunk_ = int(std::clamp<std::size_t>(workspace_bytes / per_pair, 1, d.pairs()));
    const std::size_t elems = std::size_t(chunk_) * d.group() * d.T * d.T;
    S_ = pgolf::cuda::DeviceBuffer<float>(elems);
    dP_ = pgolf::cuda::DeviceBuffer<float>(elems);
    P_ = pgolf::cuda::DeviceBuffer<bf16>(elems);
    heads_ = pgolf::cuda::DeviceBuffer<bf16>(d.tokens() * d.H * Hd);
    gain_part_ = pgolf::cuda::DeviceBuffer<float>(d.tokens() * d.H);
  }

  const AttentionDims& dims() const { return d_; }
  int chunk() const { return chunk_; }
  // Document starts [B*T] on the device (the CPU reference's semantics) for the next forward and
  // backward; nullptr: plain causal.
  void set_doc_starts(const std::int32_t* starts) { doc_start_ = starts; }

  // gain [H] -> y_tokens [B*T, H*Hd], lse [B,H,T] (all the backward needs besides q, k, v).
  void forward(const bf16* q, const bf16* k, const bf16* v, const float* gain, bf16* y_tokens, float* lse,
               cudaStream_t st = nullptr) {
    bf16* y_heads = heads_.data();
    for (std::size_t p0 = 0; p0 < d_.pairs(); p0 += chunk_) {
      const int n = int(std::min<std::size_t>(chunk_, d_.pairs() - p0));
      const std::size_t rows = std::size_t(n) * rT();
      for_blocks([&](const Tile& b) {  // S = Q K^T, only the tiles left of the diagonal
        gemm_.run(shape(n, false, true, b.M, b.keys, Hd, Hd, Hd, d_.T, kF32, q_stride(), kv_stride(), score_stride()),
                  q + p0 * q_stride() + b.row0 * Hd, k + p0 * kv_stride(), S_.data() + b.row0 * d_.T, 1.f, 0.f, st);
      });
      detail::causal_softmax_kernel<<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(
          S_.data(), score_rows(rows, p0, gain), P_.data(), lse + p0 * rT());
      PGOLF_CUDA_CHECK_LAUNCH("causal_softmax");
      for_blocks([&](const Tile& b) {  // Y = P V
        gemm_.run(shape(n, false, false, b.M, Hd, b.keys, d_.T, Hd, Hd, kBF16, score_stride(), kv_stride(), q_stride()),
                  P_.data() + b.row0 * d_.T, v + p0 * kv_stride(), y_heads + p0 * q_stride() + b.row0 * Hd, 1.f, 0.f,
                  st);
      });
    }
    const std::size_t total = d_.tokens() * d_.H * Hd;
    detail::relayout_kernel<Hd, true><<<blocks_for(total, 256), 256, 0, st>>>(y_heads, d_, y_tokens);
    PGOLF_CUDA_CHECK_LAUNCH("heads_to_tokens");
  }

  // dy_tokens [B*T, H*Hd] -> dq [B,H,T,Hd], dk, dv [B,G,T,Hd] (fp32, overwritten; dv added to when
  // accumulate_dv); dgain [H] accumulates.
  void backward(const bf16* dy_tokens, const bf16* q, const bf16* k, const bf16* v, const float* gain,
                const float* lse, float* dq, float* dk, float* dv, float* dgain,
                cudaStream_t st = nullptr, bool accumulate_dv = false) {
    const std::size_t total = d_.tokens() * d_.H * Hd;
    bf16* dy = heads_.data();
    detail::relayout_kernel<Hd, false><<<blocks_for(total, 256), 256, 0, st>>>(dy_tokens, d_, dy);
    PGOLF_CUDA_CHECK_LAUNCH("tokens_to_heads");
    for (std::size_t p0 = 0; p0 < d_.pairs(); p0 += chunk_) {
      const int n = int(std::min<std::size_t>(chunk_, d_.pairs() - p0));
      const std::size_t rows = std::size_t(n) * rT();
      const bf16* qc = q + p0 * q_stride();
      const bf16* kc = k + p0 * kv_stride();
      const bf16* vc = v + p0 * kv_stride();
      const bf16* dyc = dy + p0 * q_stride();
      float* dkc = dk + p0 * kv_stride();
      float* dvc = dv + p0 * kv_stride();
      // dK and dV sum over query tiles and the group's heads: zero, then accumulate (beta = 1). A dV
      // that already holds another reader's gradient is not zeroed.
      PGOLF_CUDA_CHECK(cudaMemsetAsync(dkc, 0, std::size_t(n) * kv_stride() * sizeof(float), st));
      if (!accumulate_dv) PGOLF_CUDA_CHECK(cudaMemsetAsync(dvc, 0, std::size_t(n) * kv_stride() * sizeof(float), st));
      const auto scores = [&](const Tile& b) {
        return shape(n, false, true, b.M, b.keys, Hd, Hd, Hd, d_.T, kF32, q_stride(), kv_stride(), score_stride());
      };
      for_blocks([&](const Tile& b) {  // S = Q K^T again, dP = dY V^T
        gemm_.run(scores(b), qc + b.row0 * Hd, kc, S_.data() + b.row0 * d_.T, 1.f, 0.f, st);
        gemm_.run(scores(b), dyc + b.row0 * Hd, vc, dP_.data() + b.row0 * d_.T, 1.f, 0.f, st);
      });
      detail::causal_probs_kernel<<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(
          S_.data(), score_rows(rows, p0, gain), lse + p0 * rT(), P_.data());
      PGOLF_CUDA_CHECK_LAUNCH("causal_probs");
      for_blocks([&](const Tile& b) {  // dV += P^T dY
        gemm_.run(shape(n, true, false, b.keys, Hd, b.M, d_.T, Hd, Hd, kF32, score_stride(), q_stride(), kv_stride()),
                  P_.data() + b.row0 * d_.T, dyc + b.row0 * Hd, dvc, 1.f, 1.f, st);
      });
      detail::softmax_backward_kernel<<<row_blocks(rows), 32 * kWarpsPerBlock, 0, st>>>(
          S_.data(), dP_.data(), score_rows(rows, p0, gain), lse + p0 * rT(), P_.data(), gain_part_.data() + p0 * rT());
      PGOLF_CUDA_CHECK_LAUNCH("softmax_backward");
      for_blocks([&](const Tile& b) {  // dQ = dS K;  dK += dS^T Q
        gemm_.run(shape(n, false, false, b.M, Hd, b.keys, d_.T, Hd, Hd, kF32, score_stride(), kv_stride(), q_stride()),
                  P_.data() + b.row0 * d_.T, kc, dq + p0 * q_stride() + b.row0 * Hd, 1.f, 0.f, st);
        gemm_.run(shape(n, true, false, b.keys, Hd, b.M, d_.T, Hd, Hd, kF32, score_stride(), q_stride(), kv_stride()),
                  P_.data() + b.row0 * d_.T, qc + b.row0 * Hd, dkc, 1.f, 1.f, st);
      });
    }
    detail::head_sum_kernel<<<d_.H, 256, 0, st>>>(gain_part_.data(), d_.B, d_.H, d_.T, dgain);
    PGOLF_CUDA_CHECK_LAUNCH("attention_gain_sum");
  }

 private:
  static constexpr auto kF32 = pgolf::cuda::DType::f32;
  static constexpr auto kBF16 = pgolf::cuda::DType::bf16;

  // A tile of query rows [row0, row0 + M) of one head of the pair (row0 = head * T + first query),
  // which sees keys [0, keys): the causal mask leaves the keys beyond its last query out.
  struct Tile {
    std::size_t row0;
    int M, keys;
  };
  template <class F>
  void for_blocks(F&& f) const {
    for (int j = 0; j < d_.group(); ++j)
      for (int t0 = 0; t0 < d_.T; t0 += tile_) {
        const int M = std::min(tile_, d_.T - t0);
        f(Tile{std::size_t(j) * d_.T + t0, M, t0 + M});
      }
  }

  detail::ScoreRows score_rows(std::size_t rows, std::size_t p0, const float* gain) const {
    return {rows, p0, d_.T, tile_, d_.group(), d_.G, gain, 1.f / std::sqrt(float(Hd)), doc_start_};
  }
  std::size_t rT() const { return std::size_t(d_.group()) * d_.T; }
  std::size_t q_stride() const { return rT() * Hd; }
  std::size_t kv_stride() const { return std::size_t(d_.T) * Hd; }
  std::size_t score_stride() const { return rT() * d_.T; }

  // C[M, N] = op(A) op(B) batched over n pairs; A is bf16, B bf16, C of type c.
  static pgolf::cuda::GemmShape shape(int n, bool ta, bool tb, int M, int N, int K, long long lda, long long ldb,
                                      long long ldc, pgolf::cuda::DType c, std::size_t sa, std::size_t sb,
                                      std::size_t sc) {
    return {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc, .a = kBF16, .b = kBF16,
            .c = c, .batch = n, .stride_a = (long long)sa, .stride_b = (long long)sb, .stride_c = (long long)sc};
  }

  pgolf::cuda::Gemm& gemm_;
  AttentionDims d_;
  int chunk_ = 1;
  pgolf::cuda::DeviceBuffer<float> S_, dP_, gain_part_;
  pgolf::cuda::DeviceBuffer<bf16> P_, heads_;
  int tile_ = 64;
  const std::int32_t* doc_start_ = nullptr;
};

}  // namespace pgolf::ops::cuda
