// The device layout of a parameter table: the same tensors in the same order, each starting at a
// multiple of 64 elements (256 bytes of fp32, 128 of bf16), so every tensor meets cuBLASLt's and
// the vector loads' alignment whatever the sizes before it (a 4-head q_gain would otherwise leave
// the next matrix 8 bytes off in bf16). Host copies (checkpoints, export) use the packed table
// layout; to_device_layout / to_table_layout convert between the two, tensor by tensor.
#pragma once

#include <array>
#include <span>
#include <vector>

#include <cuda_runtime.h>

#include "pgolf/core/cuda_check.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf::cuda {

inline constexpr std::size_t kParamAlign = 64;

// A model's device parameter (or gradient) buffer, in the device layout: what GPU models hand the
// Trainer where CPU models hand a std::span.
struct DeviceParamSpan {
  float* data = nullptr;
  std::size_t size = 0;
};

template <std::size_t N>
constexpr std::array<ParamInfo, N> device_param_table(const std::array<ParamInfo, N>& table) {
  std::array<ParamInfo, N> out = table;
  std::size_t at = 0;
  for (auto& p : out) {
    p.offset = at;
    at += (p.numel() + kParamAlign - 1) / kParamAlign * kParamAlign;
  }
  return out;
}

template <std::size_t N>
constexpr std::size_t device_table_size(const std::array<ParamInfo, N>& dev) {
  return dev.empty() ? 0 : (dev.back().offset + dev.back().numel() + kParamAlign - 1) / kParamAlign * kParamAlign;
}

// host (table layout) -> device (device layout); the padding is zeroed.
template <class T, std::size_t N>
void to_device_layout(const std::array<ParamInfo, N>& table, const std::array<ParamInfo, N>& dev,
                      std::span<const T> host, T* device, std::size_t device_size) {
  PGOLF_CHECK(host.size() == table_size(table), "to_device_layout: ", host.size(), " values, the table holds ",
              table_size(table));
  if (device_size > 0) PGOLF_CUDA_CHECK(cudaMemset(device, 0, device_size * sizeof(T)));
  // != rather than <: nvcc warns of "i < 0" for a model without parameters (N = 0)
  for (std::size_t i = 0; i != N; ++i)
    PGOLF_CUDA_CHECK(cudaMemcpy(device + dev[i].offset, host.data() + table[i].offset, table[i].numel() * sizeof(T),
                                cudaMemcpyHostToDevice));
}

template <class T, std::size_t N>
std::vector<T> to_table_layout(const std::array<ParamInfo, N>& table, const std::array<ParamInfo, N>& dev,
                               const T* device) {
  std::vector<T> host(table_size(table));
  for (std::size_t i = 0; i != N; ++i)
    PGOLF_CUDA_CHECK(cudaMemcpy(host.data() + table[i].offset, device + dev[i].offset, table[i].numel() * sizeof(T),
                                cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace pgolf::cuda
