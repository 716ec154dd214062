// Token embedding on the GPU: gather, and a deterministic backward.
//
// Forward: out[n, :] = table[ids[n], :], fp32 table to fp32 or bf16 activations; one thread per
// 4 channels (16-byte loads), Dim a compile-time constant.
// Backward: the reference scatter-adds rows with atomics, whose order (and float sum) changes from
// run to run. Here the (token, position) pairs are sorted with CUB (a stable radix sort, so
// positions stay ascending within a token), runs of equal tokens are found with CUB's run-length
// encoding, and each run is cut into chunks of at most kChunkRows rows. Pass 1: one block per chunk
// sums its rows in position order into a partial row; pass 2: one block per run adds its chunks'
// partials, in order, into the gradient row it alone owns: the same bits every run. The chunks keep
// a frequent token (a few percent of a batch in text) from serialising the whole backward in one
// block, which the first version (one block per run) did. Floor: reading dy once (N*Dim*4 bytes)
// plus the sort's few passes over 8-byte pairs and the partials (N/kChunkRows + runs rows).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>
#include <cuda_bf16.h>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/core/cuda_check.hpp"

namespace pgolf::ops::cuda {

namespace detail {
__device__ inline void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ inline void store4(__nv_bfloat16* p, float4 v) {
  __nv_bfloat162* q = reinterpret_cast<__nv_bfloat162*>(p);
  q[0] = __floats2bfloat162_rn(v.x, v.y);
  q[1] = __floats2bfloat162_rn(v.z, v.w);
}

template <int Dim, class TOut>
__global__ void embedding_forward_kernel(const std::int32_t* __restrict__ ids, std::size_t n,
                                         const float* __restrict__ table, TOut* __restrict__ out) {
  constexpr int kVec = Dim / 4;
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * kVec) return;
  const std::size_t row = i / kVec;
  const int c = int(i % kVec) * 4;
  const float4 v = *reinterpret_cast<const float4*>(table + std::size_t(ids[row]) * Dim + c);
  store4(out + row * Dim + c, v);
}

inline constexpr int kChunkRows = 64;

// chunks[r] := ceil(counts[r] / kChunkRows) for the runs that exist, 0 past them.
__global__ inline void run_chunks_kernel(const std::int32_t* __restrict__ counts, const int* __restrict__ num_runs,
                                         int max_runs, std::int32_t* __restrict__ chunks) {
  const int r = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (r >= max_runs) return;
  chunks[r] = r < *num_runs ? (counts[r] + kChunkRows - 1) / kChunkRows : 0;
}

// Pass 1: block c sums chunk c's rows. Its run is the last one whose first chunk is <= c (every run
// has at least one chunk, so first_chunk is strictly increasing over the runs).
template <int Dim>
__global__ void embedding_chunk_sum_kernel(const std::int32_t* __restrict__ counts,
                                           const std::int32_t* __restrict__ offsets, const int* __restrict__ num_runs,
                                           const std::int32_t* __restrict__ chunks,
                                           const std::int32_t* __restrict__ first_chunk,
                                           const std::int32_t* __restrict__ positions, const float* __restrict__ dy,
                                           float* __restrict__ partial) {
  const int runs = *num_runs;
  const int c = int(blockIdx.x);
  if (runs == 0 || c >= first_chunk[runs - 1] + chunks[runs - 1]) return;
  int lo = 0, hi = runs - 1;  // first_chunk[lo] <= c
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first_chunk[mid] <= c) lo = mid;
    else hi = mid - 1;
  }
  const int begin = offsets[lo] + (c - first_chunk[lo]) * kChunkRows;
  const int end = min(begin + kChunkRows, offsets[lo] + counts[lo]);
  for (int v = int(threadIdx.x); v < Dim / 4; v += int(blockDim.x)) {
    float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int k = begin; k < end; ++k) {
      const float4 x = *reinterpret_cast<const float4*>(dy + std::size_t(positions[k]) * Dim + 4 * v);
      s.x += x.x, s.y += x.y, s.z += x.z, s.w += x.w;
    }
    *reinterpret_cast<float4*>(partial + std::size_t(c) * Dim + 4 * v) = s;
  }
}

// Pass 2: block r adds run r's chunk partials, in chunk order, into its token's gradient row.
template <int Dim>
__global__ void embedding_run_sum_kernel(const std::uint32_t* __restrict__ tokens, const int* __restrict__ num_runs,
                                         const std::int32_t* __restrict__ chunks,
                                         const std::int32_t* __restrict__ first_chunk,
                                         const float* __restrict__ partial, float* __restrict__ dtable) {
  const int r = int(blockIdx.x);
  if (r >= *num_runs) return;
  const int c0 = first_chunk[r], c1 = c0 + chunks[r];
  float* g = dtable + std::size_t(tokens[r]) * Dim;
  for (int v = int(threadIdx.x); v < Dim / 4; v += int(blockDim.x)) {
    float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int c = c0; c < c1; ++c) {
      const float4 x = *reinterpret_cast<const float4*>(partial + std::size_t(c) * Dim + 4 * v);
      s.x += x.x, s.y += x.y, s.z += x.z, s.w += x.w;
    }
    float4 o = *reinterpret_cast<float4*>(g + 4 * v);
    o.x += s.x, o.y += s.y, o.z += s.z, o.w += s.w;
    *reinterpret_cast<float4*>(g + 4 * v) = o;
  }
}

__global__ inline void iota_kernel(std::int32_t* p, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = std::int32_t(i);
}
}  // namespace detail

template <int Dim, class TOut>
void embedding_forward(const std::int32_t* ids, std::size_t n, const float* table, TOut* out, cudaStream_t stream = 0) {
  static_assert(Dim % 4 == 0, "embedding: Dim must be a multiple of 4 (16-byte loads)");
  const std::size_t threads = n * (Dim / 4);
  if (threads == 0) return;
  detail::embedding_forward_kernel<Dim, TOut><<<unsigned((threads + 255) / 256), 256, 0, stream>>>(ids, n, table, out);
  PGOLF_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

// Scratch for the backward over up to max_tokens positions, sized once (CUB's two-phase query).
class EmbeddingBackward {
 public:
  EmbeddingBackward(std::size_t max_tokens, int vocab)
      : n_(max_tokens), vocab_(vocab), keys_(n_), keys_sorted_(n_), pos_(n_), pos_sorted_(n_), unique_(n_),
        counts_(n_), offsets_(n_), chunks_(max_runs()), first_chunk_(max_runs()), num_runs_(1) {
    PGOLF_CHECK(vocab >= 1, "EmbeddingBackward: vocabulary of ", vocab);
    std::size_t a = 0, b = 0, c = 0, e = 0;
    PGOLF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, a, keys_.data(), keys_sorted_.data(), pos_.data(),
                                                     pos_sorted_.data(), int(n_), 0, bits()));
    PGOLF_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(nullptr, b, keys_sorted_.data(), unique_.data(), counts_.data(),
                                                        num_runs_.data(), int(n_)));
    PGOLF_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, c, counts_.data(), offsets_.data(), int(n_)));
    PGOLF_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, e, chunks_.data(), first_chunk_.data(), int(max_runs())));
    temp_ = pgolf::cuda::DeviceBuffer<unsigned char>(std::max({a, b, c, e, std::size_t(1)}));
  }

  // dtable[vocab, Dim] += sum over n of dy[n, :] placed at row ids[n]; deterministic.
  // The partial rows are allocated on the first call for a Dim (grow only).
  template <int Dim>
  void run(const std::int32_t* ids, std::size_t n, const float* dy, float* dtable, cudaStream_t stream = 0) {
    static_assert(Dim % 4 == 0, "EmbeddingBackward: Dim must be a multiple of 4 (16-byte loads)");
    PGOLF_CHECK(n <= n_, "EmbeddingBackward: ", n, " tokens, sized for ", n_);
    if (n == 0) return;
    const std::size_t runs_bound = std::min<std::size_t>(n, std::size_t(vocab_));
    const std::size_t chunks_bound = n / detail::kChunkRows + runs_bound;  // sum of ceil(count / C)
    const std::size_t need = (n_ / detail::kChunkRows + max_runs()) * Dim;  // >= chunks_bound * Dim
    if (partial_.size() < need) partial_ = pgolf::cuda::DeviceBuffer<float>(need);
    std::size_t bytes = temp_.size();
    PGOLF_CUDA_CHECK(cudaMemcpyAsync(keys_.data(), ids, n * sizeof(std::int32_t), cudaMemcpyDeviceToDevice, stream));
    detail::iota_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(pos_.data(), n);
    PGOLF_CUDA_CHECK_LAUNCH("iota_kernel");
    PGOLF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp_.data(), bytes, keys_.data(), keys_sorted_.data(), pos_.data(),
                                                     pos_sorted_.data(), int(n), 0, bits(), stream));
    bytes = temp_.size();
    PGOLF_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(temp_.data(), bytes, keys_sorted_.data(), unique_.data(),
                                                        counts_.data(), num_runs_.data(), int(n), stream));
    bytes = temp_.size();
    PGOLF_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp_.data(), bytes, counts_.data(), offsets_.data(), int(n), stream));
    // Chunks per run and each run's first chunk; then one block per possible chunk and per possible
    // run (blocks past the real counts exit at once).
    detail::run_chunks_kernel<<<unsigned((runs_bound + 255) / 256), 256, 0, stream>>>(counts_.data(), num_runs_.data(),
                                                                                      int(runs_bound), chunks_.data());
    PGOLF_CUDA_CHECK_LAUNCH("embedding_run_chunks");
    bytes = temp_.size();
    PGOLF_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp_.data(), bytes, chunks_.data(), first_chunk_.data(),
                                                   int(runs_bound), stream));
    constexpr unsigned threads = Dim / 4 < 256 ? Dim / 4 : 256;
    detail::embedding_chunk_sum_kernel<Dim><<<unsigned(chunks_bound), threads, 0, stream>>>(
        counts_.data(), offsets_.data(), num_runs_.data(), chunks_.data(), first_chunk_.data(), pos_sorted_.data(), dy,
        partial_.data());
    PGOLF_CUDA_CHECK_LAUNCH("embedding_chunk_sum");
    detail::embedding_run_sum_kernel<Dim><<<unsigned(runs_bound), threads, 0, stream>>>(
        unique_.data(), num_runs_.data(), chunks_.data(), first_chunk_.data(), partial_.data(), dtable);
    PGOLF_CUDA_CHECK_LAUNCH("embedding_run_sum");
  }

 private:
  std::size_t max_runs() const { return std::max<std::size_t>(1, std::min<std::size_t>(n_, std::size_t(vocab_))); }
  int bits() const {
    int b = 1;
    while ((1 << b) < vocab_) ++b;
    return b;
  }
  std::size_t n_;
  int vocab_;
  pgolf::cuda::DeviceBuffer<std::uint32_t> keys_, keys_sorted_, unique_;  // token ids as unsigned radix keys
  pgolf::cuda::DeviceBuffer<std::int32_t> pos_, pos_sorted_, counts_, offsets_, chunks_, first_chunk_;
  pgolf::cuda::DeviceBuffer<float> partial_;  // [chunks, Dim]
  pgolf::cuda::DeviceBuffer<int> num_runs_;
  pgolf::cuda::DeviceBuffer<unsigned char> temp_;
};

}  // namespace pgolf::ops::cuda
