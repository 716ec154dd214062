// Token embedding on the GPU: gather, and a deterministic backward.
//
// Forward: out[n, :] = table[ids[n], :], fp32 table to fp32 or bf16 activations; one thread per
// 4 channels (16-byte loads), Dim a compile-time constant.
// Backward: the reference scatter-adds rows with atomics, whose order (and float sum) changes from
// run to run. Here the (token, position) pairs are sorted with CUB (a stable radix sort, so
// positions stay ascending within a token), runs of equal tokens are found with CUB's run-length
// encoding, and one block per distinct token sums its rows in position order and adds the sum into
// the gradient row it alone owns: the same bits every run. Floor: reading dy once (N*Dim*4 bytes)
// plus the sort's few passes over 8-byte pairs.
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

template <int Dim>
__global__ void embedding_backward_kernel(const std::uint32_t* __restrict__ tokens, const std::int32_t* __restrict__ counts,
                                          const std::int32_t* __restrict__ offsets, const int* __restrict__ num_runs,
                                          const std::int32_t* __restrict__ positions, const float* __restrict__ dy,
                                          float* __restrict__ dtable) {
  const int run = blockIdx.x;
  if (run >= *num_runs) return;
  const int begin = offsets[run], end = begin + counts[run];
  float* g = dtable + std::size_t(tokens[run]) * Dim;
  for (int c = threadIdx.x; c < Dim; c += blockDim.x) {
    float s = 0.f;
    for (int k = begin; k < end; ++k) s += dy[std::size_t(positions[k]) * Dim + c];
    g[c] += s;
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
        counts_(n_), offsets_(n_), num_runs_(1) {
    std::size_t a = 0, b = 0, c = 0;
    PGOLF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, a, keys_.data(), keys_sorted_.data(), pos_.data(),
                                                     pos_sorted_.data(), int(n_), 0, bits()));
    PGOLF_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(nullptr, b, keys_sorted_.data(), unique_.data(), counts_.data(),
                                                        num_runs_.data(), int(n_)));
    PGOLF_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, c, counts_.data(), offsets_.data(), int(n_)));
    temp_ = pgolf::cuda::DeviceBuffer<unsigned char>(std::max({a, b, c, std::size_t(1)}));
  }

  // dtable[vocab, Dim] += sum over n of dy[n, :] placed at row ids[n]; deterministic.
  template <int Dim>
  void run(const std::int32_t* ids, std::size_t n, const float* dy, float* dtable, cudaStream_t stream = 0) {
    PGOLF_CHECK(n <= n_, "EmbeddingBackward: ", n, " tokens, sized for ", n_);
    if (n == 0) return;
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
    // One block per possible run; blocks past the real count exit at once.
    detail::embedding_backward_kernel<Dim><<<unsigned(n), Dim < 256 ? Dim : 256, 0, stream>>>(
        unique_.data(), counts_.data(), offsets_.data(), num_runs_.data(), pos_sorted_.data(), dy, dtable);
    PGOLF_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
  }

 private:
  int bits() const {
    int b = 1;
    while ((1 << b) < vocab_) ++b;
    return b;
  }
  std::size_t n_;
  int vocab_;
  pgolf::cuda::DeviceBuffer<std::uint32_t> keys_, keys_sorted_, unique_;  // token ids as unsigned radix keys
  pgolf::cuda::DeviceBuffer<std::int32_t> pos_, pos_sorted_, counts_, offsets_;
  pgolf::cuda::DeviceBuffer<int> num_runs_;
  pgolf::cuda::DeviceBuffer<unsigned char> temp_;
};

}  // namespace pgolf::ops::cuda
