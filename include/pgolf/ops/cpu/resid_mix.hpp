// Residual mix with the embedding anchor: x_in = m0 * x + m1 * x0, m = [2, dim] (init rows 1, 0).
#pragma once

#include <cstddef>

#include "pgolf/ops/cpu/channel_reduce.hpp"

namespace pgolf::ops::cpu {

template <class T>
void resid_mix_forward(const T* x, const T* x0, const T* mix, std::size_t N, int dim, T* out) {
  const T* m0 = mix;
  const T* m1 = mix + dim;
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n)
    for (int c = 0; c < dim; ++c) out[n * dim + c] = m0[c] * x[n * dim + c] + m1[c] * x0[n * dim + c];
}

// dx = m0 * dout (overwritten); dx0 += m1 * dout (x0 collects gradient from every layer);
// dmix[0] += sum dout * x, dmix[1] += sum dout * x0.
template <class T>
void resid_mix_backward(const T* dout, const T* x, const T* x0, const T* mix, std::size_t N, int dim, T* dx, T* dx0,
                        T* dmix) {
  const T* m0 = mix;
  const T* m1 = mix + dim;
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n)
    for (int c = 0; c < dim; ++c) {
      const T g = dout[n * dim + c];
      dx[n * dim + c] = m0[c] * g;
      dx0[n * dim + c] += m1[c] * g;
    }
  channel_dot_accumulate(dout, x, N, dim, dmix);
  channel_dot_accumulate(dout, x0, N, dim, dmix + dim);
}

}  // namespace pgolf::ops::cpu
