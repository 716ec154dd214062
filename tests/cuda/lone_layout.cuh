// LoneLayout<Cuda>: host copies of the CUDA backend's registers for the lone-run harness
// (tests/nn/lone_run.hpp). q, k, v are head-major on the device ([batch, heads, seq, head_dim]) and
// token-major on the host; values are fp32 or bf16 as the backend types them.
#pragma once

#include <cuda_bf16.h>

#include <vector>

#include "../nn/lone_run.hpp"
#include "pgolf/backend/cuda/backend.cuh"

namespace pgolf::test {

template <>
struct LoneLayout<Cuda> {
  // Host (token-major) index of device element i.
  static std::size_t host_index(Reg r, std::size_t i, int width, int head_dim, const Shape& sh) {
    if (r != Reg::q && r != Reg::k && r != Reg::v) return i;
    const std::size_t heads = std::size_t(width / head_dim), d = i % std::size_t(head_dim);
    std::size_t rest = i / std::size_t(head_dim);
    const std::size_t t = rest % std::size_t(sh.seq);
    rest /= std::size_t(sh.seq);
    const std::size_t h = rest % heads, b = rest / heads;
    return ((b * std::size_t(sh.seq) + t) * heads + h) * std::size_t(head_dim) + d;
  }
  static float to_float(float v) { return v; }
  static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  template <class X>
  static X from_double(double v) {
    if constexpr (std::is_same_v<X, float>) return float(v);
    else return __float2bfloat16(float(v));
  }

  template <class X>
  static void put(Reg r, const std::vector<double>& host, X* dev, int width, int head_dim, const Shape& sh) {
    std::vector<X> buf(host.size());
    for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = from_double<X>(host[host_index(r, i, width, head_dim, sh)]);
    PGOLF_CUDA_CHECK(cudaMemcpy(dev, buf.data(), buf.size() * sizeof(X), cudaMemcpyHostToDevice));
  }
  template <class X>
  static std::vector<double> get(Reg r, const X* dev, std::size_t n, int width, int head_dim, const Shape& sh) {
    std::vector<X> buf(n);
    PGOLF_CUDA_CHECK(cudaMemcpy(buf.data(), dev, n * sizeof(X), cudaMemcpyDeviceToHost));
    std::vector<double> host(n);
    for (std::size_t i = 0; i < n; ++i) host[host_index(r, i, width, head_dim, sh)] = to_float(buf[i]);
    return host;
  }
};

}  // namespace pgolf::test
