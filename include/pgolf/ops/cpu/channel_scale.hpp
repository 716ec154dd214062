// Scaled residual branch with a per-channel scale: out = x + a * f (attn_scale, mlp_scale).
#pragma once

#include <cstddef>

#include "pgolf/ops/cpu/channel_reduce.hpp"

namespace pgolf::ops::cpu {

template <class T>
void channel_scale_forward(const T* x, const T* a, const T* f, std::size_t N, int dim, T* out) {
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n)
    for (int c = 0; c < dim; ++c) out[n * dim + c] = x[n * dim + c] + a[c] * f[n * dim + c];
}

// dx is the identity path (the caller passes dout on); df = a * dout (overwritten);
// da += sum_n dout * f.
template <class T>
void channel_scale_backward(const T* dout, const T* a, const T* f, std::size_t N, int dim, T* df, T* da) {
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n)
    for (int c = 0; c < dim; ++c) df[n * dim + c] = a[c] * dout[n * dim + c];
  channel_dot_accumulate(dout, f, N, dim, da);
}

}  // namespace pgolf::ops::cpu
