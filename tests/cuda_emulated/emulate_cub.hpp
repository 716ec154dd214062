// The CUB device algorithms the library uses (ops/cuda/embedding.cuh's deterministic backward), on
// the CPU, with CUB's two-phase protocol: a call with no temporary storage reports the bytes it
// needs for n items; a call with storage smaller than that for its n fails. Inputs and outputs must
// lie inside allocations.
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <type_traits>
#include <vector>

#include "emulate_runtime.hpp"

namespace emu::cub_detail {
inline std::size_t temp_bytes(int n) { return 256 + 16 * std::size_t(std::max(n, 0)); }
// Nonzero (an error) when the call must stop: a size query answered, or storage too small.
inline cudaError_t query(void* temp, std::size_t& bytes, int n, bool& answered) {
  answered = temp == nullptr;
  if (answered) {
    bytes = temp_bytes(n);
    return cudaSuccess;
  }
  if (n < 0 || bytes < temp_bytes(n) || !device_range(temp, bytes)) return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}
template <class T>
bool inside(const T* p, int n) {
  return n == 0 || device_range(p, sizeof(T) * std::size_t(n));
}
}  // namespace emu::cub_detail

namespace cub {
struct DeviceRadixSort {
  // Stable by key, on key bits [begin_bit, end_bit).
  template <class K, class V>
  static cudaError_t SortPairs(void* temp, std::size_t& bytes, const K* keys_in, K* keys_out, const V* values_in,
                               V* values_out, int n, int begin_bit = 0, int end_bit = int(sizeof(K) * 8),
                               cudaStream_t = nullptr) {
    bool answered = false;
    if (const cudaError_t e = emu::cub_detail::query(temp, bytes, n, answered); e != cudaSuccess || answered) return e;
    using emu::cub_detail::inside;
    if (!inside(keys_in, n) || !inside(keys_out, n) || !inside(values_in, n) || !inside(values_out, n) ||
        begin_bit < 0 || end_bit > int(sizeof(K) * 8) || begin_bit >= end_bit)
      return emu::fail(cudaErrorInvalidValue);
    using U = std::make_unsigned_t<K>;
    const int width = end_bit - begin_bit;
    const U mask = width >= int(sizeof(U) * 8) ? U(~U(0)) : U((U(1) << width) - 1);
    // Signed keys order as numbers: CUB flips their sign bit before taking the bits.
    const U flip = std::is_signed_v<K> ? U(U(1) << (sizeof(U) * 8 - 1)) : U(0);
    auto key = [&](int i) { return U(U(U(keys_in[i]) ^ flip) >> begin_bit) & mask; };
    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
    std::vector<K> k(static_cast<std::size_t>(n));
    std::vector<V> v(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) k[i] = keys_in[order[i]], v[i] = values_in[order[i]];
    std::copy(k.begin(), k.end(), keys_out);
    std::copy(v.begin(), v.end(), values_out);
    return cudaSuccess;
  }
};
struct DeviceRunLengthEncode {
  template <class T, class C, class R>
  static cudaError_t Encode(void* temp, std::size_t& bytes, const T* in, T* unique_out, C* counts_out, R* num_runs,
                            int n, cudaStream_t = nullptr) {
    bool answered = false;
    if (const cudaError_t e = emu::cub_detail::query(temp, bytes, n, answered); e != cudaSuccess || answered) return e;
    using emu::cub_detail::inside;
    if (!inside(in, n) || !inside(num_runs, 1)) return emu::fail(cudaErrorInvalidValue);
    int runs = 0;
    for (int i = 0; i < n; ++i) runs += i == 0 || !(in[i] == in[i - 1]) ? 1 : 0;
    if (!inside(unique_out, runs) || !inside(counts_out, runs)) return emu::fail(cudaErrorInvalidValue);
    int r = -1;
    for (int i = 0; i < n; ++i) {
      if (i == 0 || !(in[i] == in[i - 1])) unique_out[++r] = in[i], counts_out[r] = 0;
      counts_out[r] += 1;
    }
    *num_runs = R(runs);
    return cudaSuccess;
  }
};
struct DeviceScan {
  template <class T, class U>
  static cudaError_t ExclusiveSum(void* temp, std::size_t& bytes, const T* in, U* out, int n,
                                  cudaStream_t = nullptr) {
    bool answered = false;
    if (const cudaError_t e = emu::cub_detail::query(temp, bytes, n, answered); e != cudaSuccess || answered) return e;
    using emu::cub_detail::inside;
    if (!inside(in, n) || !inside(out, n)) return emu::fail(cudaErrorInvalidValue);
    U sum{};
    for (int i = 0; i < n; ++i) {
      const U x = U(in[i]);  // in and out may alias
      out[i] = sum;
      sum = U(sum + x);
    }
    return cudaSuccess;
  }
};
}  // namespace cub
