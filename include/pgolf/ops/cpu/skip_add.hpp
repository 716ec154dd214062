// U-Net skip: before decoder layer i, x = x + w_i * skip where skip is the output of the mirrored
// encoder layer. Unlike a residual branch, the skip's gradient is added into a tensor that already
// carries gradient (the encoder output also feeds the next layer), hence the accumulating backward.
#pragma once

#include <cstddef>

#include "pgolf/ops/cpu/channel_reduce.hpp"

namespace pgolf::ops::cpu {

template <class T>
void skip_add_forward(T* x, const T* w, const T* skip, std::size_t N, int dim) {
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n)
    for (int c = 0; c < dim; ++c) x[n * dim + c] += w[c] * skip[n * dim + c];
}

// dskip += w * dout; dw += sum_n dout * skip. (dx = dout: identity.)
template <class T>
void skip_add_backward(const T* dout, const T* w, const T* skip, std::size_t N, int dim, T* dskip, T* dw) {
#pragma omp parallel for schedule(static)
  for (std::size_t n = 0; n < N; ++n)
    for (int c = 0; c < dim; ++c) dskip[n * dim + c] += w[c] * dout[n * dim + c];
  channel_dot_accumulate(dout, skip, N, dim, dw);
}

}  // namespace pgolf::ops::cpu
