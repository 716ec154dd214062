// Fused causal GQA attention on bf16 tensor cores (flash attention), forward and deterministic
// backward, with the same layouts and results as Attention<Hd> (ops/cuda/attention.cuh):
//   q [B, H, T, Hd], k, v [B, G, T, Hd] (bf16), gain [H] (fp32), c_h = gain_h / sqrt(Hd);
//   forward:  y_tokens [B*T, H*Hd] (bf16), lse [B, H, T] (fp32)
//   backward: dq [B, H, T, Hd], dk, dv [B, G, T, Hd] (fp32; dq, dk overwritten, dv overwritten or
//             added to), dgain [H] accumulated.
// Scores never reach global memory: a block keeps its tile of queries on chip and streams key tiles
// past it (online softmax), skipping the key tiles beyond the causal diagonal. Products use
// nvcuda::wmma (bf16 16x16x16, fp32 accumulate); the score tile is staged in shared memory for the
// row-wise softmax. This first version favours being checkable over speed (no mma.sync/wgmma, no
// pipelining of the tile loads). Status: matches the CPU reference on an H200 (2026-12-04,
// tests/cuda/test_flash_attention_cuda.cpp, compute-sanitizer memcheck, racecheck and synccheck
// clean) and under the emulation (tests/cuda_emulated); slow: about 48 TFLOP/s forward and 34
// backward at seq 1024, head dim 64 (bench/results/2026-12-04-h200-cuda.md). FlashKernels::mma is
// the first step past that: forward_mma_kernel, dq_mma_kernel and dkv_mma_kernel keep scores and
// accumulators on registers (mma.sync through ops/cuda/mma.cuh); checked under the emulation only,
// not yet run on a GPU.
// tests/cuda_emulated copies the text of `namespace flash` below: keep the kernels inside it, using
// only what emulate_cuda.hpp provides.
//
// Tiles: a block has 4 warps and 64 query rows. In the forward and the dQ kernel these are the R
// query heads of one KV head at 64/R consecutive positions each (so the R heads share every K/V
// tile they load); warp w owns rows 16w..16w+15, which are always one head at 16 consecutive
// positions. Key tiles are 64 wide. Rows past T are zero-filled and never written.
//
// Document masking (optional, set_doc_starts): query t of row b sees keys [doc_start[b*T + t], t],
// as in ops/cpu/attention.hpp. Inside the kernels, not as a mask tensor: a query block starts at the
// key tile holding its first row's document start (the block's smallest, starts being
// non-decreasing), a key block stops at the first query tile whose first row starts after its last
// key, and elements outside [start, t] are masked as the causal ones are.
//
// Backward, deterministic (no atomics on data), scores recomputed from q, k and lse:
//   1. dq kernel, one block per query tile: pass 1 over the key tiles gives the row term
//      D = rowsum(P * dP) from fp32 P and dP (as Attention does: the gain's gradient is a sum with
//      heavy cancellation, and D taken from the same fp32 P and dP as dZ keeps both sides of it
//      consistent, which D = rowsum(dY * y) from the bf16 output would not); pass 2 forms
//      dZ = P * (dP - D) in fp32, its share of d gain (sum dZ * S, fp32) per warp into a buffer, and
//      dQ = (c_h dZ) K with c_h dZ rounded to bf16. D is written for the second kernel.
//   2. dk/dv kernel, one block per key tile of one (batch, KV head): loops over the group's heads
//      and the query tiles from the diagonal on, dV += P^T dY, dK += (c_h dZ)^T Q.
//   3. d gain_h += the per-warp partial sums of head h in a fixed order.
// Pass 1 costs one more QK^T and dY V^T per tile than a backward that reads D from the output
// (4.5x the forward's products in all, against 3.5x): the price of the consistent D above.
//
// Backward, atomic (FlashAttention(dims, false); FlashAttention-2's scheme), dq not bitwise
// reproducible:
//   1. the dq kernel's pass 1 alone: D (same values as above);
//   2. the dk/dv kernel, which also forms dQ += (c dZ) K for each (key tile, query tile) it visits
//      and adds it into dq (fp32, zeroed first) with atomicAdd: no second pass over the scores
//      (3.5x the forward's products in all, against 4.5x), at the cost of the atomics; the gain's
//      partial sums are per warp of keys, written to the same buffer in place of the dq kernel's;
//   3. d gain_h as in the deterministic mode: fixed order, so dk, dv and dgain stay bitwise
//      reproducible in this mode too; only dq's sums run in an arbitrary order.
#pragma once

#include <mma.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/ops/cuda/attention.cuh"
#include "pgolf/ops/cuda/common.cuh"
#include "pgolf/ops/cuda/mma.cuh"

namespace pgolf::ops::cuda {

namespace flash {

namespace wmma = nvcuda::wmma;

inline constexpr int kRows = 64;  // query rows (forward, dq) or keys (dk/dv) per block
inline constexpr int kKeys = 64;  // keys (forward, dq) or queries (dk/dv) per inner tile
inline constexpr int kWarps = 4;
inline constexpr int kThreads = 32 * kWarps;
inline constexpr int kChunk = 16;  // rows per warp; also the granularity of the gain's partial sums
// Head dims with kernels: a multiple of 16 (the wmma tile); 32 is what the small test models use.
template <int Hd>
inline constexpr bool supports_head_dim = Hd == 32 || Hd == 64 || Hd == 128;

// Padded leading dimensions (elements): rows shift banks; wmma needs 16-byte multiples.
template <int Hd>
inline constexpr int ldb = Hd + 8;  // bf16 [rows, Hd] tiles
inline constexpr int lds = kKeys + 4;  // fp32 score tiles
inline constexpr int ldp = kKeys + 8;  // bf16 probability tiles
template <int Hd>
inline constexpr int ldo = Hd + 4;  // fp32 [rows, Hd] accumulators / scratch

__host__ __device__ constexpr std::size_t align128(std::size_t n) { return (n + 127) / 128 * 128; }

struct Params {
  const bf16 *q, *k, *v;
  const float* gain;
  int B, T, H, G;
  float inv_sqrt_d;
  // Document masking: [B*T], query t of row b sees keys [doc_start[b*T + t], t]; starts are
  // non-decreasing in t and <= t. nullptr: plain causal.
  const std::int32_t* doc_start = nullptr;
};

// First key query t (< T) of row b may see.
__device__ inline int first_key(const Params& p, int b, int t) {
  return p.doc_start ? p.doc_start[std::size_t(b) * p.T + t] : 0;
}

// Shared memory carving: regions in order, each 128-byte aligned.
struct Carve {
  char* p;
  template <class T>
  __device__ T* take(std::size_t n) {
    T* r = reinterpret_cast<T*>(p);
    p += align128(n * sizeof(T));
    return r;
  }
};

template <int Hd>
struct ForwardSmem {
  static constexpr std::size_t bytes = 3 * align128(std::size_t(kRows) * ldb<Hd> * 2) +
                                       align128(std::size_t(kRows) * lds * 4) + align128(std::size_t(kRows) * ldp * 2) +
                                       align128(std::size_t(kRows) * ldo<Hd> * 4);
};
template <int Hd>
struct DqSmem {  // Q, dY, K, V; S, dP (reused as the [64, Hd] fp32 scratch at the end); dS
  static constexpr std::size_t bytes = 4 * align128(std::size_t(kRows) * ldb<Hd> * 2) +
                                       2 * align128(std::size_t(kRows) * lds * 4) +
                                       align128(std::size_t(kRows) * ldp * 2);
  static_assert(std::size_t(kRows) * ldo<Hd> * 4 <= 2 * align128(std::size_t(kRows) * lds * 4),
                "the dq scratch must fit in the S and dP tiles");
};
template <int Hd>
struct DkvSmem {  // K, V, Q, dY; S^T, dP^T (then the scratch); P^T, dS^T; lse, D, first keys
  static constexpr std::size_t bytes = 4 * align128(std::size_t(kRows) * ldb<Hd> * 2) +
                                       2 * align128(std::size_t(kRows) * lds * 4) +
                                       2 * align128(std::size_t(kRows) * ldp * 2) + 3 * align128(kKeys * 4);
  static_assert(std::size_t(kRows) * ldo<Hd> * 4 <= 2 * align128(std::size_t(kRows) * lds * 4),
                "the dk/dv scratch must fit in the S and dP tiles");
};

// Copies `rows` rows of Hd bf16 into a [rows, ldb] tile with 16-byte loads; src(r) == nullptr
// (a row past T) is filled with zeros.
template <int Hd, class Src>
__device__ void load_tile(bf16* dst, Src src) {
  constexpr int per_row = Hd / 8;
  for (int i = threadIdx.x; i < kRows * per_row; i += kThreads) {
    const int r = i / per_row, c = (i % per_row) * 8;
    const bf16* s = src(r);
    uint4 val = make_uint4(0, 0, 0, 0);
    if (s) val = *reinterpret_cast<const uint4*>(s + c);
    *reinterpret_cast<uint4*>(dst + r * ldb<Hd> + c) = val;
  }
}

// C[16 x 64] (fp32, into smem) = A[16 x Hd] B^T where B is [64 x Hd]: both tiles row-major in smem.
template <int Hd>
__device__ void product_abt(const bf16* a, const bf16* b, float* c) {
  for (int n = 0; n < kKeys / 16; ++n) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    for (int kk = 0; kk < Hd / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;  // B^T: element (k, n) at b[n][k]
      wmma::load_matrix_sync(fa, a + kk * 16, ldb<Hd>);
      wmma::load_matrix_sync(fb, b + n * 16 * ldb<Hd> + kk * 16, ldb<Hd>);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + n * 16, acc, lds, wmma::mem_row_major);
  }
}

// acc[n] += A[16 x 64] (bf16, ld ldp) B[64 x Hd] (bf16 row-major, ld ldb), n over Hd/16 column blocks.
template <int Hd>
__device__ void product_ab(const bf16* a, const bf16* b,
                           wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&acc)[Hd / 16]) {
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a + kk * 16, ldp);
    for (int n = 0; n < Hd / 16; ++n) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
      wmma::load_matrix_sync(fb, b + kk * 16 * ldb<Hd> + n * 16, ldb<Hd>);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

// Row i of a forward / dq block: head g*R + i / (64/R) at position t0 + i % (64/R).
template <int R>
struct QueryRows {
  static constexpr int per_head = kRows / R;
  static_assert(kRows % R == 0 && per_head % kChunk == 0, "R must be 1, 2 or 4");
  int b, g, t0;
  __device__ QueryRows(const Params& p) {
    b = int(blockIdx.y) / p.G, g = int(blockIdx.y) % p.G;
    t0 = int(gridDim.x - 1 - blockIdx.x) * per_head;  // the longest rows first
  }
  __device__ int head(int i, const Params&) const { return g * R + i / per_head; }
  __device__ int pos(int i) const { return t0 + i % per_head; }
  // Last key any row of the block sees, and so the number of key tiles.
  __device__ int key_tiles(const Params& p) const { return (min(t0 + per_head, p.T) - 1) / kKeys + 1; }
  // First key tile any row sees: every head's first row is at t0, whose document start is the
  // block's smallest (starts are non-decreasing); the key tiles before it are skipped whole.
  __device__ int first_key_tile(const Params& p) const { return first_key(p, b, t0) / kKeys; }
};

// Key tile j0 of the (batch, KV head) whose rows start at kv0: K and V rows, zeros past T.
template <int Hd>
__device__ void load_kv_tile(bf16* Ks, bf16* Vs, const Params& p, std::size_t kv0, int j0) {
  const int T = p.T;
  load_tile<Hd>(Ks, [&](int i) { return j0 + i < T ? p.k + (kv0 + j0 + i) * Hd : nullptr; });
  load_tile<Hd>(Vs, [&](int i) { return j0 + i < T ? p.v + (kv0 + j0 + i) * Hd : nullptr; });
}
// A forward / dq block's query rows (QueryRows), of q and of dy_tokens.
template <int Hd, class Rows>
__device__ void load_query_rows(bf16* Qs, const Params& p, const Rows& qr) {
  load_tile<Hd>(Qs, [&](int i) -> const bf16* {
    const int t = qr.pos(i);
    return t < p.T ? p.q + ((std::size_t(qr.b) * p.H + qr.head(i, p)) * p.T + t) * Hd : nullptr;
  });
}
template <int Hd, class Rows>
__device__ void load_dy_rows(bf16* dYs, const Params& p, const Rows& qr, const bf16* dy_tokens) {
  load_tile<Hd>(dYs, [&](int i) -> const bf16* {
    const int t = qr.pos(i);
    return t < p.T ? dy_tokens + ((std::size_t(qr.b) * p.T + t) * p.H + qr.head(i, p)) * Hd : nullptr;
  });
}
// The query tile t0 of head h a dk/dv block visits: Q and dY rows, and each query's lse, D and
// first key (queries past T: lse inf, so P = 0).
template <int Hd>
__device__ void load_query_tile(const Params& p, const bf16* dy_tokens, const float* lse, const float* Din, int b,
                                int h, int t0, bf16* Qs, bf16* dYs, float* lses, float* Ds, int* los) {
  const int T = p.T;
  const std::size_t bh = std::size_t(b) * p.H + h;
  load_tile<Hd>(Qs, [&](int i) { return t0 + i < T ? p.q + (bh * T + t0 + i) * Hd : nullptr; });
  load_tile<Hd>(dYs, [&](int i) {
    return t0 + i < T ? dy_tokens + ((std::size_t(b) * T + t0 + i) * p.H + h) * Hd : nullptr;
  });
  for (int i = threadIdx.x; i < kKeys; i += kThreads) {
    const bool in = t0 + i < T;
    lses[i] = in ? lse[bh * T + t0 + i] : INFINITY;
    Ds[i] = in ? Din[bh * T + t0 + i] : 0.f;
    los[i] = in ? first_key(p, b, t0 + i) : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward.
template <int Hd, int R>
__global__ void __launch_bounds__(kThreads) forward_kernel(Params p, bf16* __restrict__ y_tokens,
                                                           float* __restrict__ lse) {
  extern __shared__ __align__(128) char smem[];
  Carve cv{smem};
  bf16* Qs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Ks = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Vs = cv.take<bf16>(kRows * ldb<Hd>);
  float* Ss = cv.take<float>(kRows * lds);
  bf16* Ps = cv.take<bf16>(kRows * ldp);
  float* Os = cv.take<float>(kRows * ldo<Hd>);

  const QueryRows<R> qr(p);
  const int T = p.T, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t kv0 = (std::size_t(qr.b) * p.G + qr.g) * T;  // row of (b, g, t = 0) in k, v
  load_query_rows<Hd>(Qs, p, qr);
  for (int i = threadIdx.x; i < kRows * ldo<Hd>; i += kThreads) Os[i] = 0.f;

  // This lane's row: two lanes per row, one with the even columns and one with the odd (interleaved, so
  // that the lanes of a warp spread over more shared-memory banks than with contiguous halves).
  const int row = warp * kChunk + lane / 2, half = lane % 2;
  const int t = qr.pos(row), h = qr.head(row, p);
  const int lo = t < T ? first_key(p, qr.b, t) : 0;  // keys j in [lo, t]
  const float c = p.gain[h] * p.inv_sqrt_d;
  float m = -INFINITY, l = 0.f;
  float* srow = Ss + row * lds;
  bf16* prow = Ps + row * ldp;
  float* orow = Os + row * ldo<Hd>;

  const int tiles = qr.key_tiles(p);
  for (int kt = qr.first_key_tile(p); kt < tiles; ++kt) {
    const int j0 = kt * kKeys;
    __syncthreads();  // every warp is done with the previous K, V tiles
    load_kv_tile<Hd>(Ks, Vs, p, kv0, j0);
    __syncthreads();
    product_abt<Hd>(Qs + warp * kChunk * ldb<Hd>, Ks, Ss + warp * kChunk * lds);
    __syncwarp();
    // Online softmax of this lane's 32 columns; masked entries (j > t, j < lo, or j past T) are -inf.
    float mx = -INFINITY;
    for (int e = 0; e < 32; ++e) {
      const int col = 2 * e + half, j = j0 + col;
      const float s = (j <= t && j >= lo && j < T) ? srow[col] * c : -INFINITY;
      srow[col] = s;
      mx = fmaxf(mx, s);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx);
    // A row's tiles before the one holding its first key lo (other rows of the block may need them)
    // are fully masked: m stays -inf and the guards keep l and the row at zero rather than NaN. Key
    // lo <= t is in some processed tile, so by the end m is finite for rows t < T.
    const float alpha = m == -INFINITY ? 0.f : __expf(m - m_new);
    float sum = 0.f;
    for (int e = 0; e < 32; ++e) {
      const int col = 2 * e + half;
      const float s = srow[col];
      const float pv = s == -INFINITY ? 0.f : __expf(s - m_new);
      sum += pv;
      prow[col] = __float2bfloat16_rn(pv);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    for (int e = half; e < Hd; e += 2) orow[e] *= alpha;
    __syncwarp();
    // O += P V for this warp's 16 rows, the accumulator round-tripping through shared memory (its
    // per-row rescale above needs the element layout, which wmma fragments do not expose).
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[Hd / 16];
    for (int n = 0; n < Hd / 16; ++n)
      wmma::load_matrix_sync(acc[n], Os + warp * kChunk * ldo<Hd> + n * 16, ldo<Hd>, wmma::mem_row_major);
    product_ab<Hd>(Ps + warp * kChunk * ldp, Vs, acc);
    for (int n = 0; n < Hd / 16; ++n)
      wmma::store_matrix_sync(Os + warp * kChunk * ldo<Hd> + n * 16, acc[n], ldo<Hd>, wmma::mem_row_major);
    __syncwarp();
  }
  if (t >= T) return;
  const float inv = 1.f / l;
  bf16* out = y_tokens + ((std::size_t(qr.b) * T + t) * p.H + h) * Hd;
  for (int e = half * (Hd / 2); e < (half + 1) * (Hd / 2); e += 2)
    *reinterpret_cast<__nv_bfloat162*>(out + e) = __floats2bfloat162_rn(orow[e] * inv, orow[e + 1] * inv);
  if (half == 0) lse[(std::size_t(qr.b) * p.H + h) * T + t] = m + __logf(l);
}

// This warp's s = A B^T on registers: A its 16 rows x Hd, B a tile's 64 rows x Hd (both row-major
// in shared memory, leading dimension ldb); s[n] holds columns 8n..8n+7.
template <int Hd>
__device__ void product_abt_regs(const bf16* a, const bf16* b, mma::FragC (&s)[kKeys / 8], int lane) {
  for (auto& f : s) mma::zero(f);
  for (int kk = 0; kk < Hd / 16; ++kk) {
    mma::FragA fa;
    mma::load_a(fa, a + kk * 16, ldb<Hd>, lane);
    for (int n = 0; n < kKeys / 8; ++n) {
      mma::FragB fb;
      mma::load_b_nk(fb, b + n * 8 * ldb<Hd> + kk * 16, ldb<Hd>, lane);
      mma::mma_16x8x16(s[n], fa, fb);
    }
  }
}
// acc += P B on registers: P this warp's 16 x 64 accumulators (rounded to bf16 as the A operand),
// B a tile's 64 rows x Hd in shared memory; acc[n] holds columns 8n..8n+7.
template <int Hd>
__device__ void product_ab_regs(const mma::FragC (&pc)[kKeys / 8], const bf16* b, mma::FragC (&acc)[Hd / 8],
                                int lane) {
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    mma::FragA fa;
    mma::a_from_c(fa, pc[2 * kk], pc[2 * kk + 1]);
    for (int n = 0; n < Hd / 8; ++n) {
      mma::FragB fb;
      mma::load_b_kn(fb, b + kk * 16 * ldb<Hd> + n * 8, ldb<Hd>, lane);
      mma::mma_16x8x16(acc[n], fa, fb);
    }
  }
}

// The same forward with the scores, probabilities and output accumulator in registers (mma.sync
// m16n8k16, ops/cuda/mma.cuh): no score or accumulator tile in shared memory (a third of the
// shared memory: 27 KB at head dim 64 against 70), the online softmax on the accumulator where it
// lies, and the probabilities reused as the next product's operand. Warp w still owns rows
// 16w..16w+15; lane l holds rows l/4 and l/4 + 8 of them, the quad of lanes 4(l/4)..4(l/4)+3 a
// row's 64 keys (16 each). Same results as forward_kernel to rounding (the sums' order differs).
template <int Hd, int R>
__global__ void __launch_bounds__(kThreads) forward_mma_kernel(Params p, bf16* __restrict__ y_tokens,
                                                               float* __restrict__ lse) {
  extern __shared__ __align__(128) char smem[];
  Carve cv{smem};
  bf16* Qs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Ks = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Vs = cv.take<bf16>(kRows * ldb<Hd>);

  const QueryRows<R> qr(p);
  const int T = p.T, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t kv0 = (std::size_t(qr.b) * p.G + qr.g) * T;
  load_query_rows<Hd>(Qs, p, qr);

  // This lane's two rows (u = 0, 1): one head (a warp's rows are), positions t[u].
  const int row0 = warp * kChunk + mma::group(lane), h = qr.head(row0, p);
  int t[2], lo[2];
  float m[2], l[2];
  for (int u = 0; u < 2; ++u) {
    t[u] = qr.pos(row0 + 8 * u);
    lo[u] = t[u] < T ? first_key(p, qr.b, t[u]) : 0;
    m[u] = -INFINITY, l[u] = 0.f;
  }
  const float c = p.gain[h] * p.inv_sqrt_d;
  mma::FragC o[Hd / 8];
  for (auto& f : o) mma::zero(f);

  const int tiles = qr.key_tiles(p);
  for (int kt = qr.first_key_tile(p); kt < tiles; ++kt) {
    const int j0 = kt * kKeys;
    __syncthreads();  // every warp is done with the previous K, V tiles
    load_kv_tile<Hd>(Ks, Vs, p, kv0, j0);
    __syncthreads();
    mma::FragC s[kKeys / 8];  // keys 8n..8n+7 of the tile
    product_abt_regs<Hd>(Qs + warp * kChunk * ldb<Hd>, Ks, s, lane);
    // Scale and mask (j > t, j < lo, j past T: -inf), then the online softmax per row; a row's
    // 64 scores lie in the 4 lanes of its quad (xor 1 and 2 reach them).
    float mx[2] = {-INFINITY, -INFINITY};
    for (int n = 0; n < kKeys / 8; ++n)
      for (int i = 0; i < 4; ++i) {
        const int u = i / 2, j = j0 + n * 8 + mma::c_col(lane, i);
        const float v = (j <= t[u] && j >= lo[u] && j < T) ? s[n].x[i] * c : -INFINITY;
        s[n].x[i] = v;
        mx[u] = fmaxf(mx[u], v);
      }
    float alpha[2];
    for (int u = 0; u < 2; ++u) {
      mx[u] = fmaxf(mx[u], __shfl_xor_sync(0xffffffffu, mx[u], 1));
      mx[u] = fmaxf(mx[u], __shfl_xor_sync(0xffffffffu, mx[u], 2));
      const float m_new = fmaxf(m[u], mx[u]);
      // Fully masked so far (a row's tiles before its first key lo): m stays -inf, l and O at zero.
      alpha[u] = m[u] == -INFINITY ? 0.f : __expf(m[u] - m_new);
      m[u] = m_new;
    }
    float sum[2] = {0.f, 0.f};
    for (int n = 0; n < kKeys / 8; ++n)
      for (int i = 0; i < 4; ++i) {
        const int u = i / 2;
        const float pv = s[n].x[i] == -INFINITY ? 0.f : __expf(s[n].x[i] - m[u]);
        s[n].x[i] = pv;
        sum[u] += pv;
      }
    for (int u = 0; u < 2; ++u) {
      sum[u] += __shfl_xor_sync(0xffffffffu, sum[u], 1);
      sum[u] += __shfl_xor_sync(0xffffffffu, sum[u], 2);
      l[u] = l[u] * alpha[u] + sum[u];
    }
    for (auto& f : o) {
      f.x[0] *= alpha[0], f.x[1] *= alpha[0];
      f.x[2] *= alpha[1], f.x[3] *= alpha[1];
    }
    product_ab_regs<Hd>(s, Vs, o, lane);  // O += P V, P (bf16) straight from the score accumulators
  }
  for (int u = 0; u < 2; ++u) {
    if (t[u] >= T) continue;
    const float inv = 1.f / l[u];
    bf16* out = y_tokens + ((std::size_t(qr.b) * T + t[u]) * p.H + h) * Hd + 2 * mma::pair(lane);
    for (int n = 0; n < Hd / 8; ++n)
      *reinterpret_cast<__nv_bfloat162*>(out + n * 8) =
          __floats2bfloat162_rn(o[n].x[2 * u] * inv, o[n].x[2 * u + 1] * inv);
    if (mma::pair(lane) == 0) lse[(std::size_t(qr.b) * p.H + h) * T + t[u]] = m[u] + __logf(l[u]);
  }
}

template <int Hd>
struct ForwardMmaSmem {
  static constexpr std::size_t bytes = 3 * align128(std::size_t(kRows) * ldb<Hd> * 2);
};

// ---------------------------------------------------------------------------------------------
// Backward 1: dq, D and the gain's partial sums, one block per query tile.
// part: [B, H, ceil(T/16)], one slot per 16 positions of a head (a warp's rows).
// DOnly: stop after D (the atomic backward's first step; dq and part are not touched).
template <int Hd, int R, bool DOnly = false>
__global__ void __launch_bounds__(kThreads) dq_kernel(Params p, const bf16* __restrict__ dy_tokens,
                                                      const float* __restrict__ lse, float* __restrict__ dq,
                                                      float* __restrict__ Dout, float* __restrict__ part) {
  extern __shared__ __align__(128) char smem[];
  Carve cv{smem};
  bf16* Qs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* dYs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Ks = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Vs = cv.take<bf16>(kRows * ldb<Hd>);
  float* Ss = cv.take<float>(kRows * lds);
  float* dPs = cv.take<float>(kRows * lds);
  bf16* dSs = cv.take<bf16>(kRows * ldp);
  float* scratch = Ss;  // [64, ldo] fp32 over S and dP once the loops are done

  const QueryRows<R> qr(p);
  const int T = p.T, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t kv0 = (std::size_t(qr.b) * p.G + qr.g) * T;
  load_query_rows<Hd>(Qs, p, qr);
  load_dy_rows<Hd>(dYs, p, qr, dy_tokens);

  const int row = warp * kChunk + lane / 2, half = lane % 2;
  const int t = qr.pos(row), h = qr.head(row, p);
  const int lo = t < T ? first_key(p, qr.b, t) : 0;
  const float c = p.gain[h] * p.inv_sqrt_d;
  const float l = t < T ? lse[(std::size_t(qr.b) * p.H + h) * T + t] : INFINITY;  // rows past T: P = 0
  const float* srow = Ss + row * lds;
  const float* dprow = dPs + row * lds;
  bf16* dsrow = dSs + row * ldp;
  const int first = qr.first_key_tile(p), tiles = qr.key_tiles(p);

  const auto scores = [&](int j0) {  // S and dP of this warp's rows against key tile j0
    __syncthreads();
    load_kv_tile<Hd>(Ks, Vs, p, kv0, j0);
    __syncthreads();
    product_abt<Hd>(Qs + warp * kChunk * ldb<Hd>, Ks, Ss + warp * kChunk * lds);
    product_abt<Hd>(dYs + warp * kChunk * ldb<Hd>, Vs, dPs + warp * kChunk * lds);
    __syncwarp();
  };
  const auto prob = [&](int j0, int col) {
    const int j = j0 + col;
    return (j <= t && j >= lo && j < T) ? __expf(srow[col] * c - l) : 0.f;
  };

  // Pass 1: D = rowsum(P * dP) in fp32.
  float D = 0.f;
  for (int kt = first; kt < tiles; ++kt) {
    const int j0 = kt * kKeys;
    scores(j0);
    for (int e = 0; e < 32; ++e) {
      const int col = 2 * e + half;
      D += prob(j0, col) * dprow[col];
    }
  }
  D += __shfl_xor_sync(0xffffffffu, D, 1);  // a + b == b + a: both lanes of the row hold the same bits
  if (t < T && half == 0) Dout[(std::size_t(qr.b) * p.H + h) * T + t] = D;
  if constexpr (!DOnly) {  // the deterministic backward: pass 2 and dq
    // Pass 2: dZ = P (dP - D); d gain's share sum dZ S; dQ += (c dZ) K.
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[Hd / 16];
    for (int n = 0; n < Hd / 16; ++n) wmma::fill_fragment(acc[n], 0.f);
    float g = 0.f;
    for (int kt = first; kt < tiles; ++kt) {
      const int j0 = kt * kKeys;
      scores(j0);
      for (int e = 0; e < 32; ++e) {
        const int col = 2 * e + half;
        const float z = prob(j0, col) * (dprow[col] - D);
        g += z * srow[col];
        dsrow[col] = __float2bfloat16_rn(z * c);
      }
      __syncwarp();
      product_ab<Hd>(dSs + warp * kChunk * ldp, Ks, acc);
    }
    g = warp_sum(g);  // the warp's 16 rows: one head, 16 consecutive positions
    const int t_first = qr.pos(warp * kChunk);
    const int chunks = (T + kChunk - 1) / kChunk;
    if (lane == 0 && t_first < T)
      part[(std::size_t(qr.b) * p.H + qr.head(warp * kChunk, p)) * chunks + t_first / kChunk] = g * p.inv_sqrt_d;

    __syncthreads();  // the scratch overlays every warp's S and dP
    for (int n = 0; n < Hd / 16; ++n)
      wmma::store_matrix_sync(scratch + warp * kChunk * ldo<Hd> + n * 16, acc[n], ldo<Hd>, wmma::mem_row_major);
    __syncwarp();
    if (t >= T) return;
    float* out = dq + ((std::size_t(qr.b) * p.H + h) * T + t) * Hd;
    const float* src = scratch + row * ldo<Hd>;
    for (int e = half * (Hd / 2); e < (half + 1) * (Hd / 2); e += 4)
      *reinterpret_cast<float4*>(out + e) = make_float4(src[e], src[e + 1], src[e + 2], src[e + 3]);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward 2: dk, dv for one key tile of one (batch, KV head), over the group's heads and the query
// tiles at and after the diagonal, up to the first whose first row's document starts after the
// tile's last key (that tile and all later ones see none of these keys: starts are non-decreasing).
// Works on transposed scores: rows are keys, columns queries.
// Atomic: also dq += (c dZ) K for every visited (key tile, query tile), added into dq (fp32, zeroed
// beforehand) with atomicAdd, and the gain's partial sums per warp of keys into part
// [B, H, ceil(T/16)] (slot: head, 16 keys); otherwise dq and part are not touched.
template <int Hd, int R, bool Atomic = false>
__global__ void __launch_bounds__(kThreads) dkv_kernel(Params p, const bf16* __restrict__ dy_tokens,
                                                       const float* __restrict__ lse, const float* __restrict__ Din,
                                                       float* __restrict__ dk, float* __restrict__ dv,
                                                       bool accumulate_dv, float* __restrict__ dq,
                                                       float* __restrict__ part) {
  extern __shared__ __align__(128) char smem[];
  Carve cv{smem};
  bf16* Ks = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Vs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Qs = cv.take<bf16>(kKeys * ldb<Hd>);
  bf16* dYs = cv.take<bf16>(kKeys * ldb<Hd>);
  float* Ss = cv.take<float>(kRows * lds);
  float* dPs = cv.take<float>(kRows * lds);
  bf16* Ps = cv.take<bf16>(kRows * ldp);
  bf16* dSs = cv.take<bf16>(kRows * ldp);
  float* lses = cv.take<float>(kKeys);
  float* Ds = cv.take<float>(kKeys);
  int* los = cv.take<int>(kKeys);  // each query's first key
  float* scratch = Ss;

  const int b = int(blockIdx.y) / p.G, g = int(blockIdx.y) % p.G;
  const int T = p.T, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int j0 = int(blockIdx.x) * kRows;
  const int j_last = min(j0 + kRows, T) - 1;
  const std::size_t kv0 = (std::size_t(b) * p.G + g) * T;
  load_kv_tile<Hd>(Ks, Vs, p, kv0, j0);

  const int row = warp * kChunk + lane / 2, half = lane % 2;
  const int j = j0 + row;
  const float* srow = Ss + row * lds;
  const float* dprow = dPs + row * lds;
  bf16* prow = Ps + row * ldp;
  bf16* dsrow = dSs + row * ldp;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> dK[Hd / 16], dV[Hd / 16];
  for (int n = 0; n < Hd / 16; ++n) wmma::fill_fragment(dK[n], 0.f), wmma::fill_fragment(dV[n], 0.f);

  for (int r = 0; r < R; ++r) {
    const int h = g * R + r;
    const float c = p.gain[h] * p.inv_sqrt_d;
    const std::size_t bh = std::size_t(b) * p.H + h;
    float gs = 0.f;  // Atomic: this lane's share of sum dZ * S over its key row
    // Query tiles from the diagonal on; the condition reads the same value in every thread.
    for (int t0 = j0; t0 < T && first_key(p, b, t0) <= j_last; t0 += kKeys) {
      __syncthreads();
      load_query_tile<Hd>(p, dy_tokens, lse, Din, b, h, t0, Qs, dYs, lses, Ds, los);
      __syncthreads();
      product_abt<Hd>(Ks + warp * kChunk * ldb<Hd>, Qs, Ss + warp * kChunk * lds);   // S^T = K Q^T
      product_abt<Hd>(Vs + warp * kChunk * ldb<Hd>, dYs, dPs + warp * kChunk * lds);  // dP^T = V dY^T
      __syncwarp();
      for (int e = 0; e < 32; ++e) {
        const int col = 2 * e + half, t = t0 + col;
        const float pv = (t >= j && j >= los[col] && t < T && j < T) ? __expf(srow[col] * c - lses[col]) : 0.f;
        const float z = pv * (dprow[col] - Ds[col]);
        if constexpr (Atomic) gs += z * srow[col];
        prow[col] = __float2bfloat16_rn(pv);
        dsrow[col] = __float2bfloat16_rn(z * c);
      }
      __syncwarp();
      product_ab<Hd>(Ps + warp * kChunk * ldp, dYs, dV);  // dV += P^T dY
      product_ab<Hd>(dSs + warp * kChunk * ldp, Qs, dK);  // dK += (c dZ)^T Q
      if constexpr (Atomic) {
        // dQ of this warp's 16 queries (columns 16w.. of dS^T) against all 64 keys: needs every
        // warp's rows of dS^T, and its scratch overlays other warps' S^T and dP^T rows.
        __syncthreads();
        float* mine = scratch + warp * kChunk * ldo<Hd>;
        for (int n = 0; n < Hd / 16; ++n) {  // one accumulator at a time: dK, dV hold the registers
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
          wmma::fill_fragment(acc, 0.f);
          for (int kk = 0; kk < kRows / 16; ++kk) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> fa;  // (query, key) at dS^T[key][query]
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
            wmma::load_matrix_sync(fa, dSs + kk * 16 * ldp + warp * kChunk, ldp);
            wmma::load_matrix_sync(fb, Ks + kk * 16 * ldb<Hd> + n * 16, ldb<Hd>);
            wmma::mma_sync(acc, fa, fb, acc);
          }
          wmma::store_matrix_sync(mine + n * 16, acc, ldo<Hd>, wmma::mem_row_major);
        }
        __syncwarp();
        for (int i = 0; i < kChunk; ++i) {  // a row's Hd columns across the lanes: coalesced
          const int t = t0 + warp * kChunk + i;
          if (t >= T) break;
          float* out = dq + (bh * T + t) * Hd;
          for (int e = lane; e < Hd; e += 32) atomicAdd(out + e, mine[i * ldo<Hd> + e]);
        }
      }
    }
    if constexpr (Atomic) {  // slot (head h, keys j0 + 16w ..): every query tile's share, in loop order
      gs = warp_sum(gs);
      const int j_first = j0 + warp * kChunk, chunks = (T + kChunk - 1) / kChunk;
      if (lane == 0 && j_first < T) part[bh * chunks + j_first / kChunk] = gs * p.inv_sqrt_d;
    }
  }

  __syncthreads();
  float* mine = scratch + warp * kChunk * ldo<Hd>;
  const float* src = scratch + row * ldo<Hd>;
  const std::size_t o = (kv0 + j) * Hd;
  for (int n = 0; n < Hd / 16; ++n) wmma::store_matrix_sync(mine + n * 16, dK[n], ldo<Hd>, wmma::mem_row_major);
  __syncwarp();
  if (j < T)
    for (int e = half * (Hd / 2); e < (half + 1) * (Hd / 2); e += 4)
      *reinterpret_cast<float4*>(dk + o + e) = make_float4(src[e], src[e + 1], src[e + 2], src[e + 3]);
  __syncwarp();
  for (int n = 0; n < Hd / 16; ++n) wmma::store_matrix_sync(mine + n * 16, dV[n], ldo<Hd>, wmma::mem_row_major);
  __syncwarp();
  if (j < T)
    for (int e = half * (Hd / 2); e < (half + 1) * (Hd / 2); e += 4) {
      float4 x = make_float4(src[e], src[e + 1], src[e + 2], src[e + 3]);
      if (accumulate_dv) {
        const float4 a = *reinterpret_cast<const float4*>(dv + o + e);
        x.x += a.x, x.y += a.y, x.z += a.z, x.w += a.w;
      }
      *reinterpret_cast<float4*>(dv + o + e) = x;
    }
}

// ---------------------------------------------------------------------------------------------
// The deterministic backward on registers (mma.sync, ops/cuda/mma.cuh), for FlashKernels::mma:
// dq_kernel's and dkv_kernel's work (non-atomic) with S, dP, P and dZ as accumulators, reused as
// the next products' A operands; shared memory holds only the Q, dY, K, V tiles (and, for dk/dv,
// the queries' lse, D and first keys). Same results to rounding.
template <int Hd>
struct DqMmaSmem {
  static constexpr std::size_t bytes = 4 * align128(std::size_t(kRows) * ldb<Hd> * 2);
};
template <int Hd>
struct DkvMmaSmem {
  static constexpr std::size_t bytes = 4 * align128(std::size_t(kRows) * ldb<Hd> * 2) + 3 * align128(kKeys * 4);
};

// dq, D and the gain's partial sums of one query tile (dq_kernel's outputs, same layouts).
template <int Hd, int R>
__global__ void __launch_bounds__(kThreads) dq_mma_kernel(Params p, const bf16* __restrict__ dy_tokens,
                                                          const float* __restrict__ lse, float* __restrict__ dq,
                                                          float* __restrict__ Dout, float* __restrict__ part) {
  extern __shared__ __align__(128) char smem[];
  Carve cv{smem};
  bf16* Qs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* dYs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Ks = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Vs = cv.take<bf16>(kRows * ldb<Hd>);

  const QueryRows<R> qr(p);
  const int T = p.T, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t kv0 = (std::size_t(qr.b) * p.G + qr.g) * T;
  load_query_rows<Hd>(Qs, p, qr);
  load_dy_rows<Hd>(dYs, p, qr, dy_tokens);

  const int row0 = warp * kChunk + mma::group(lane), h = qr.head(row0, p);
  const float c = p.gain[h] * p.inv_sqrt_d;
  int t[2], lo[2];
  float l[2];
  for (int u = 0; u < 2; ++u) {
    t[u] = qr.pos(row0 + 8 * u);
    lo[u] = t[u] < T ? first_key(p, qr.b, t[u]) : 0;
    l[u] = t[u] < T ? lse[(std::size_t(qr.b) * p.H + h) * T + t[u]] : INFINITY;  // rows past T: P = 0
  }
  const int first = qr.first_key_tile(p), tiles = qr.key_tiles(p);
  const bf16* q_rows = Qs + warp * kChunk * ldb<Hd>;
  const bf16* dy_rows = dYs + warp * kChunk * ldb<Hd>;

  // S = Q K^T and dP = dY V^T of this warp's rows against key tile j0 (keys 8n.. in s[n], dp[n]).
  const auto scores = [&](int j0, mma::FragC (&s)[kKeys / 8], mma::FragC (&dp)[kKeys / 8]) {
    __syncthreads();
    load_kv_tile<Hd>(Ks, Vs, p, kv0, j0);
    __syncthreads();
    product_abt_regs<Hd>(q_rows, Ks, s, lane);
    product_abt_regs<Hd>(dy_rows, Vs, dp, lane);
  };
  const auto prob = [&](int j0, int n, int i, float sv) {
    const int u = i / 2, j = j0 + n * 8 + mma::c_col(lane, i);
    return (j <= t[u] && j >= lo[u] && j < T) ? __expf(sv * c - l[u]) : 0.f;
  };

  // Pass 1: D = rowsum(P * dP) in fp32; a row's sum over the 4 lanes of its quad.
  float D[2] = {0.f, 0.f};
  for (int kt = first; kt < tiles; ++kt) {
    const int j0 = kt * kKeys;
    mma::FragC s[kKeys / 8], dp[kKeys / 8];
    scores(j0, s, dp);
    for (int n = 0; n < kKeys / 8; ++n)
      for (int i = 0; i < 4; ++i) D[i / 2] += prob(j0, n, i, s[n].x[i]) * dp[n].x[i];
  }
  for (int u = 0; u < 2; ++u) {  // (a + b) + (c + d) either way round: every lane of the quad the same bits
    D[u] += __shfl_xor_sync(0xffffffffu, D[u], 1);
    D[u] += __shfl_xor_sync(0xffffffffu, D[u], 2);
    if (t[u] < T && mma::pair(lane) == 0) Dout[(std::size_t(qr.b) * p.H + h) * T + t[u]] = D[u];
  }
  // Pass 2: dZ = P (dP - D); d gain's share sum dZ S; dQ += (c dZ) K.
  mma::FragC acc[Hd / 8];
  for (auto& f : acc) mma::zero(f);
  float gs = 0.f;
  for (int kt = first; kt < tiles; ++kt) {
    const int j0 = kt * kKeys;
    mma::FragC s[kKeys / 8], dp[kKeys / 8];
    scores(j0, s, dp);
    for (int n = 0; n < kKeys / 8; ++n)
      for (int i = 0; i < 4; ++i) {
        const float z = prob(j0, n, i, s[n].x[i]) * (dp[n].x[i] - D[i / 2]);
        gs += z * s[n].x[i];
        s[n].x[i] = z * c;
      }
    product_ab_regs<Hd>(s, Ks, acc, lane);  // dQ += (c dZ) K
  }
  gs = warp_sum(gs);  // the warp's 16 rows: one head, 16 consecutive positions
  const int t_first = qr.pos(warp * kChunk);
  const int chunks = (T + kChunk - 1) / kChunk;
  if (lane == 0 && t_first < T)
    part[(std::size_t(qr.b) * p.H + qr.head(warp * kChunk, p)) * chunks + t_first / kChunk] = gs * p.inv_sqrt_d;
  for (int u = 0; u < 2; ++u) {
    if (t[u] >= T) continue;
    float* out = dq + ((std::size_t(qr.b) * p.H + h) * T + t[u]) * Hd + 2 * mma::pair(lane);
    for (int n = 0; n < Hd / 8; ++n)
      *reinterpret_cast<float2*>(out + n * 8) = make_float2(acc[n].x[2 * u], acc[n].x[2 * u + 1]);
  }
}

// dk, dv of one key tile (dkv_kernel's non-atomic work, same layouts and query tiles visited).
// Rows are keys (warp w: keys 16w.., lane l: keys l/4 and l/4 + 8 of them), columns queries.
template <int Hd, int R>
__global__ void __launch_bounds__(kThreads) dkv_mma_kernel(Params p, const bf16* __restrict__ dy_tokens,
                                                           const float* __restrict__ lse,
                                                           const float* __restrict__ Din, float* __restrict__ dk,
                                                           float* __restrict__ dv, bool accumulate_dv) {
  extern __shared__ __align__(128) char smem[];
  Carve cv{smem};
  bf16* Ks = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Vs = cv.take<bf16>(kRows * ldb<Hd>);
  bf16* Qs = cv.take<bf16>(kKeys * ldb<Hd>);
  bf16* dYs = cv.take<bf16>(kKeys * ldb<Hd>);
  float* lses = cv.take<float>(kKeys);
  float* Ds = cv.take<float>(kKeys);
  int* los = cv.take<int>(kKeys);  // each query's first key

  const int b = int(blockIdx.y) / p.G, g = int(blockIdx.y) % p.G;
  const int T = p.T, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int j0 = int(blockIdx.x) * kRows;
  const int j_last = min(j0 + kRows, T) - 1;
  const std::size_t kv0 = (std::size_t(b) * p.G + g) * T;
  load_kv_tile<Hd>(Ks, Vs, p, kv0, j0);
  const bf16* k_rows = Ks + warp * kChunk * ldb<Hd>;
  const bf16* v_rows = Vs + warp * kChunk * ldb<Hd>;
  int j[2];
  for (int u = 0; u < 2; ++u) j[u] = j0 + warp * kChunk + mma::group(lane) + 8 * u;

  mma::FragC dK[Hd / 8], dV[Hd / 8];
  for (int n = 0; n < Hd / 8; ++n) mma::zero(dK[n]), mma::zero(dV[n]);

  for (int r = 0; r < R; ++r) {
    const int h = g * R + r;
    const float c = p.gain[h] * p.inv_sqrt_d;
    // Query tiles from the diagonal on; the condition reads the same value in every thread.
    for (int t0 = j0; t0 < T && first_key(p, b, t0) <= j_last; t0 += kKeys) {
      __syncthreads();
      load_query_tile<Hd>(p, dy_tokens, lse, Din, b, h, t0, Qs, dYs, lses, Ds, los);
      __syncthreads();
      mma::FragC s[kKeys / 8], dp[kKeys / 8];  // S^T = K Q^T, dP^T = V dY^T (queries 8n.. in [n])
      product_abt_regs<Hd>(k_rows, Qs, s, lane);
      product_abt_regs<Hd>(v_rows, dYs, dp, lane);
      // P^T (into s) and c dZ^T (into dp).
      for (int n = 0; n < kKeys / 8; ++n)
        for (int i = 0; i < 4; ++i) {
          const int col = n * 8 + mma::c_col(lane, i), t = t0 + col, jj = j[i / 2];
          const float pv = (t >= jj && jj >= los[col] && t < T && jj < T) ? __expf(s[n].x[i] * c - lses[col]) : 0.f;
          const float z = pv * (dp[n].x[i] - Ds[col]);
          s[n].x[i] = pv;
          dp[n].x[i] = z * c;
        }
      product_ab_regs<Hd>(s, dYs, dV, lane);  // dV += P^T dY
      product_ab_regs<Hd>(dp, Qs, dK, lane);  // dK += (c dZ)^T Q
    }
  }
  for (int u = 0; u < 2; ++u) {
    if (j[u] >= T) continue;
    const std::size_t o = (kv0 + j[u]) * Hd + 2 * mma::pair(lane);
    for (int n = 0; n < Hd / 8; ++n) {
      *reinterpret_cast<float2*>(dk + o + n * 8) = make_float2(dK[n].x[2 * u], dK[n].x[2 * u + 1]);
      float2 x = make_float2(dV[n].x[2 * u], dV[n].x[2 * u + 1]);
      if (accumulate_dv) {
        const float2 a = *reinterpret_cast<const float2*>(dv + o + n * 8);
        x.x += a.x, x.y += a.y;
      }
      *reinterpret_cast<float2*>(dv + o + n * 8) = x;
    }
  }
}

}  // namespace flash

// Same forward/backward calls as Attention<Hd>; no score workspace. Head dims 32, 64 and 128, query
// heads per KV head 1, 2 or 4 (chosen at run time from the dims), any T >= 1.
// deterministic (the default): the backward without atomics, bitwise reproducible; false: the
// atomic backward (dq summed with atomicAdd, one pass fewer over the scores; see the top of this
// file). Both give the same results to rounding; set_deterministic switches between them.
// The kernels: wmma (forward_kernel, dq_kernel, dkv_kernel: scores and accumulators staged in shared
// memory; have matched the CPU on an H200) or mma (forward_mma_kernel and, for the deterministic
// backward, dq_mma_kernel and dkv_mma_kernel: on registers through mma.sync; checked under the CUDA
// emulation only until they run on a GPU). The atomic backward is wmma's in both.
enum class FlashKernels { wmma, mma };

template <int Hd>
class FlashAttention {
 public:
  explicit FlashAttention(AttentionDims d, bool deterministic = true) : d_(d), deterministic_(deterministic) {
    PGOLF_CHECK(d.Hd == Hd, "FlashAttention: head dim ", d.Hd, " but the kernels were built for ", Hd);
    PGOLF_CHECK(flash::supports_head_dim<Hd>, "FlashAttention: head dim ", Hd, " is not supported (32, 64 or 128)");
    PGOLF_CHECK(d.B >= 1 && d.T >= 1, "FlashAttention: batch ", d.B, " and sequence length ", d.T,
                " must be positive");
    PGOLF_CHECK(d.G > 0 && d.H % d.G == 0, "FlashAttention: ", d.H, " query heads do not divide into ", d.G,
                " KV heads");
    const int r = d.group();
    PGOLF_CHECK(r == 1 || r == 2 || r == 4, "FlashAttention: query heads per KV head (H / G = ", d.H, " / ", d.G,
                " = ", r, ") must be 1, 2 or 4");
    PGOLF_CHECK(d.pairs() <= 65535, "FlashAttention: batch * KV heads = ", d.pairs(), " exceeds the grid's 65535");
    int dev = 0, optin = 0;
    PGOLF_CUDA_CHECK(cudaGetDevice(&dev));
    PGOLF_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if constexpr (flash::supports_head_dim<Hd>) {
      for (const std::size_t bytes : {flash::ForwardSmem<Hd>::bytes, flash::ForwardMmaSmem<Hd>::bytes,
                                      flash::DqSmem<Hd>::bytes, flash::DkvSmem<Hd>::bytes,
                                      flash::DqMmaSmem<Hd>::bytes, flash::DkvMmaSmem<Hd>::bytes})
        PGOLF_CHECK(bytes <= std::size_t(optin), "FlashAttention: a block needs ", bytes,
                    " bytes of shared memory, the device allows ", optin);
    }
    D_ = pgolf::cuda::DeviceBuffer<float>(d.tokens() * d.H);
    part_ = pgolf::cuda::DeviceBuffer<float>(std::size_t(d.B) * d.H * chunks());
  }

  const AttentionDims& dims() const { return d_; }
  bool deterministic() const { return deterministic_; }
  void set_deterministic(bool deterministic) { deterministic_ = deterministic; }
  FlashKernels kernels() const { return kernels_; }
  void set_kernels(FlashKernels k) { kernels_ = k; }

  // Document masking for the following forward and backward calls (held until changed): starts is
  // a device array [B*T] (int32) with ops::cpu::AttentionShape::doc_start's meaning: query t of row
  // b sees keys [starts[b*T + t], t]; starts non-decreasing within a row and starts[b*T + t] <= t
  // (ops::cpu::document_starts builds them). nullptr (the default): plain causal. Forward and
  // backward of one step must see the same starts. Key tiles wholly before a query tile's first
  // document are skipped, so short documents save work.
  void set_doc_starts(const std::int32_t* starts) { doc_start_ = starts; }
  const std::int32_t* doc_starts() const { return doc_start_; }

  // gain [H] -> y_tokens [B*T, H*Hd], lse [B,H,T].
  void forward(const bf16* q, const bf16* k, const bf16* v, const float* gain, bf16* y_tokens, float* lse,
               cudaStream_t st = nullptr) {
    if constexpr (flash::supports_head_dim<Hd>) {
      const flash::Params p = params(q, k, v, gain);
      with_group([&]<int R>() {
        if (kernels_ == FlashKernels::mma) {
          raise_smem(flash::forward_mma_kernel<Hd, R>, flash::ForwardMmaSmem<Hd>::bytes);
          flash::forward_mma_kernel<Hd, R><<<query_grid(R), flash::kThreads, flash::ForwardMmaSmem<Hd>::bytes, st>>>(
              p, y_tokens, lse);
        } else {
          raise_smem(flash::forward_kernel<Hd, R>, flash::ForwardSmem<Hd>::bytes);
          flash::forward_kernel<Hd, R><<<query_grid(R), flash::kThreads, flash::ForwardSmem<Hd>::bytes, st>>>(
              p, y_tokens, lse);
        }
      });
      PGOLF_CUDA_CHECK_LAUNCH("flash_attention_forward");
    }
  }

  // dy_tokens [B*T, H*Hd] -> dq [B,H,T,Hd], dk, dv [B,G,T,Hd] (fp32, overwritten; dv added to when
  // accumulate_dv); dgain [H] accumulates. Deterministic mode: bitwise the same on every run; atomic
  // mode: dk, dv and dgain are, dq only to rounding (its sums' order varies).
  void backward(const bf16* dy_tokens, const bf16* q, const bf16* k, const bf16* v, const float* gain,
                const float* lse, float* dq, float* dk, float* dv, float* dgain, cudaStream_t st = nullptr,
                bool accumulate_dv = false) {
    if constexpr (flash::supports_head_dim<Hd>) {
      const flash::Params p = params(q, k, v, gain);
      const dim3 key_grid(unsigned((d_.T + flash::kRows - 1) / flash::kRows), unsigned(d_.pairs()));
      if (deterministic_ && kernels_ == FlashKernels::mma) {
        with_group([&]<int R>() {
          raise_smem(flash::dq_mma_kernel<Hd, R>, flash::DqMmaSmem<Hd>::bytes);
          raise_smem(flash::dkv_mma_kernel<Hd, R>, flash::DkvMmaSmem<Hd>::bytes);
          flash::dq_mma_kernel<Hd, R><<<query_grid(R), flash::kThreads, flash::DqMmaSmem<Hd>::bytes, st>>>(
              p, dy_tokens, lse, dq, D_.data(), part_.data());
          PGOLF_CUDA_CHECK_LAUNCH("flash_attention_dq_mma");
          flash::dkv_mma_kernel<Hd, R><<<key_grid, flash::kThreads, flash::DkvMmaSmem<Hd>::bytes, st>>>(
              p, dy_tokens, lse, D_.data(), dk, dv, accumulate_dv);
          PGOLF_CUDA_CHECK_LAUNCH("flash_attention_dkv_mma");
        });
      } else if (deterministic_) {
        with_group([&]<int R>() {
          raise_smem(flash::dq_kernel<Hd, R>, flash::DqSmem<Hd>::bytes);
          raise_smem(flash::dkv_kernel<Hd, R>, flash::DkvSmem<Hd>::bytes);
          flash::dq_kernel<Hd, R><<<query_grid(R), flash::kThreads, flash::DqSmem<Hd>::bytes, st>>>(
              p, dy_tokens, lse, dq, D_.data(), part_.data());
          PGOLF_CUDA_CHECK_LAUNCH("flash_attention_dq");
          flash::dkv_kernel<Hd, R><<<key_grid, flash::kThreads, flash::DkvSmem<Hd>::bytes, st>>>(
              p, dy_tokens, lse, D_.data(), dk, dv, accumulate_dv, nullptr, nullptr);
          PGOLF_CUDA_CHECK_LAUNCH("flash_attention_dkv");
        });
      } else {
        PGOLF_CUDA_CHECK(cudaMemsetAsync(dq, 0, d_.tokens() * d_.H * Hd * sizeof(float), st));
        with_group([&]<int R>() {
          raise_smem(flash::dq_kernel<Hd, R, true>, flash::DqSmem<Hd>::bytes);
          raise_smem(flash::dkv_kernel<Hd, R, true>, flash::DkvSmem<Hd>::bytes);
          flash::dq_kernel<Hd, R, true><<<query_grid(R), flash::kThreads, flash::DqSmem<Hd>::bytes, st>>>(
              p, dy_tokens, lse, nullptr, D_.data(), nullptr);
          PGOLF_CUDA_CHECK_LAUNCH("flash_attention_D");
          flash::dkv_kernel<Hd, R, true><<<key_grid, flash::kThreads, flash::DkvSmem<Hd>::bytes, st>>>(
              p, dy_tokens, lse, D_.data(), dk, dv, accumulate_dv, dq, part_.data());
          PGOLF_CUDA_CHECK_LAUNCH("flash_attention_dkv_atomic");
        });
      }
      detail::head_sum_kernel<<<d_.H, 256, 0, st>>>(part_.data(), d_.B, d_.H, chunks(), dgain);
      PGOLF_CUDA_CHECK_LAUNCH("flash_attention_gain_sum");
    }
  }

  // Shared memory per block of each kernel (bytes), for reports.
  static constexpr std::size_t forward_smem() { return flash::ForwardSmem<Hd>::bytes; }
  static constexpr std::size_t forward_mma_smem() { return flash::ForwardMmaSmem<Hd>::bytes; }
  static constexpr std::size_t dq_smem() { return flash::DqSmem<Hd>::bytes; }
  static constexpr std::size_t dkv_smem() { return flash::DkvSmem<Hd>::bytes; }

 private:
  int chunks() const { return (d_.T + flash::kChunk - 1) / flash::kChunk; }
  dim3 query_grid(int r) const {
    const int per_head = flash::kRows / r;
    return dim3(unsigned((d_.T + per_head - 1) / per_head), unsigned(d_.pairs()));
  }
  flash::Params params(const bf16* q, const bf16* k, const bf16* v, const float* gain) const {
    return {q, k, v, gain, d_.B, d_.T, d_.H, d_.G, 1.f / std::sqrt(float(Hd)), doc_start_};
  }
  // Calls f.template operator()<R>() for this group size (checked in the constructor).
  template <class F>
  void with_group(F&& f) const {
    switch (d_.group()) {
      case 1: f.template operator()<1>(); break;
      case 2: f.template operator()<2>(); break;
      case 4: f.template operator()<4>(); break;
      default: PGOLF_FAIL("FlashAttention: unsupported query heads per KV head ", d_.group());
    }
  }
  // Called beside each launch, never ahead of it: nvcc 13 gives every translation unit its own
  // (static) host stub for a kernel template, and an inline function such as the constructor may
  // come from another unit than the launch, so an attribute set there can land on another stub (seen
  // on an H200: "invalid argument" at the first launch). It is also per device. Costs a host call.
  template <class K>
  static void raise_smem(K* kernel, std::size_t bytes) {
    if (bytes > 48 * 1024)
      PGOLF_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }

  AttentionDims d_;
  bool deterministic_ = true;
  FlashKernels kernels_ = FlashKernels::wmma;
  const std::int32_t* doc_start_ = nullptr;
  pgolf::cuda::DeviceBuffer<float> D_, part_;
};

}  // namespace pgolf::ops::cuda
