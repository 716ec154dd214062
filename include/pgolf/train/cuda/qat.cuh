// Late QAT on the GPU: train/qat.hpp's FakeQuant over device parameters (the device layout), the
// same per-row formula in fp32. One thread block per row: it saves the row to the master buffer,
// reduces max |W| in shared memory, then writes Q s_r in place. restore() copies the masters back.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include <cuda_runtime.h>

#include "pgolf/backend/cuda/buffer.hpp"
#include "pgolf/backend/cuda/param_layout.hpp"
#include "pgolf/core/cuda_check.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf::cuda {

struct QatRow {
  std::size_t param, master;  // offsets of the row in the parameters and in the master buffer
  int cols;
};

namespace detail {
constexpr int kQatThreads = 256;
__global__ inline void fake_quant_rows_kernel(const QatRow* __restrict__ rows, float* __restrict__ params,
                                              float* __restrict__ master, float qmax) {
  __shared__ float red[kQatThreads];
  const QatRow r = rows[blockIdx.x];
  float* w = params + r.param;
  float amax = 0.f;
  for (int j = threadIdx.x; j < r.cols; j += kQatThreads) {
    const float v = w[j];
    master[r.master + j] = v;
    amax = fmaxf(amax, fabsf(v));
  }
  red[threadIdx.x] = amax;
  __syncthreads();
  for (int s = kQatThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const float scale = fmaxf(red[0] / qmax, 1.f / qmax);
  for (int j = threadIdx.x; j < r.cols; j += kQatThreads)
    w[j] = fminf(fmaxf(rintf(w[j] / scale), -(qmax + 1.f)), qmax) * scale;
}
__global__ inline void restore_rows_kernel(const QatRow* __restrict__ rows, float* __restrict__ params,
                                           const float* __restrict__ master) {
  const QatRow r = rows[blockIdx.x];
  for (int j = threadIdx.x; j < r.cols; j += kQatThreads) params[r.param + j] = master[r.master + j];
}
}  // namespace detail

class CudaFakeQuant {
 public:
  // dev_table: the model's storage (device-layout) table.
  template <std::size_t N>
  explicit CudaFakeQuant(const std::array<ParamInfo, N>& dev_table) {
    std::vector<QatRow> rows;
    std::size_t at = 0;
    for (const auto& p : dev_table)
      if (p.group == OptimGroup::muon_matrix)
        for (int r = 0; r < p.rows; ++r, at += std::size_t(p.cols))
          rows.push_back({p.offset + std::size_t(r) * p.cols, at, p.cols});
    rows_count_ = rows.size();
    if (rows.empty()) return;
    rows_ = DeviceBuffer<QatRow>(rows.size());
    rows_.upload(rows);
    master_ = DeviceBuffer<float>(at);
  }

  void apply(DeviceParamSpan params, int bits) {
    PGOLF_CHECK(bits >= 2 && bits <= 8, "CudaFakeQuant: bits must be in [2, 8], got ", bits);
    PGOLF_CHECK(!applied_, "CudaFakeQuant::apply: the weights are already quantised (restore() first)");
    applied_ = true;
    if (rows_count_ == 0) return;
    detail::fake_quant_rows_kernel<<<unsigned(rows_count_), detail::kQatThreads>>>(
        rows_.data(), params.data, master_.data(), float((1 << (bits - 1)) - 1));
    PGOLF_CUDA_CHECK_LAUNCH("qat_fake_quant_rows");
  }
  void restore(DeviceParamSpan params) {
    if (!applied_) return;
    applied_ = false;
    if (rows_count_ == 0) return;
    detail::restore_rows_kernel<<<unsigned(rows_count_), detail::kQatThreads>>>(rows_.data(), params.data,
                                                                                master_.data());
    PGOLF_CUDA_CHECK_LAUNCH("qat_restore_rows");
  }
  bool applied() const { return applied_; }

 private:
  std::size_t rows_count_ = 0;
  DeviceBuffer<QatRow> rows_;
  DeviceBuffer<float> master_;
  bool applied_ = false;
};

}  // namespace pgolf::cuda
