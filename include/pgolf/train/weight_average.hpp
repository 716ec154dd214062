// Weight averaging (TECHNIQUES.md 4.12, 4.13) on host buffers; train/cuda/weight_average.cuh does
// the same on device buffers. The Trainer keeps the EMA and the SWA sum in the model's parameter
// layout, in the parameters' precision (fp32 for float models; double in the double tests).
//   EMA: ema <- d ema + (1 - d) w after every optimizer step, starting from the initial weights.
//   SWA: sum <- sum + src every swa_every steps while the LR multiplier is under swa_threshold;
//        the average is sum / count.
#pragma once

#include <cstddef>
#include <span>

#include "pgolf/core/error.hpp"

namespace pgolf {

template <class T>
void ema_update(std::span<T> ema, std::span<const T> w, double decay) {
  PGOLF_CHECK(ema.size() == w.size(), "ema_update: the EMA holds ", ema.size(), " values, the weights ", w.size());
  const T d = T(decay), e = T(1.0 - decay);
  for (std::size_t i = 0; i < w.size(); ++i) ema[i] = d * ema[i] + e * w[i];
}

template <class T>
void accumulate(std::span<T> sum, std::span<const T> src) {
  PGOLF_CHECK(sum.size() == src.size(), "accumulate: the sum holds ", sum.size(), " values, the source ", src.size());
  for (std::size_t i = 0; i < src.size(); ++i) sum[i] += src[i];
}

// out = sum / count.
template <class T>
void average_into(std::span<T> out, std::span<const T> sum, long long count) {
  PGOLF_CHECK(out.size() == sum.size() && count > 0, "average_into: ", out.size(), " outputs, ", sum.size(),
              " sums, count ", count);
  const T n = T(count);
  for (std::size_t i = 0; i < sum.size(); ++i) out[i] = sum[i] / n;
}

}  // namespace pgolf
