// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). A draw is a pure function of
// (seed, stream, index), so the CPU and CUDA backends initialise bit-identical weights in any order
// and in parallel, with no generator state to carry around.
#pragma once

#include <cmath>
#include <cstdint>

#include "pgolf/core/config.hpp"

namespace pgolf {

struct Philox4x32 {
  std::uint32_t v[4];
};

PGOLF_HD constexpr Philox4x32 philox4x32_10(Philox4x32 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t(kM0) * ctr.v[0];
    const std::uint64_t p1 = std::uint64_t(kM1) * ctr.v[2];
    const auto hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    const auto hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// Keyed by the seed; the counter is (index, stream) so each parameter tensor (stream) owns an
// independent sequence indexed by element.
PGOLF_HD constexpr Philox4x32 philox_draw(std::uint64_t seed, std::uint32_t stream, std::uint64_t index) {
  return philox4x32_10(
      Philox4x32{{std::uint32_t(index), std::uint32_t(index >> 32), stream, 0x70676f6cu /* "pgol" */}},
      std::uint32_t(seed), std::uint32_t(seed >> 32));
}

// Uniform double in [0, 1) with 53 random bits.
PGOLF_HD constexpr double bits_to_unit(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits = ((std::uint64_t(hi) << 32) | lo) >> 11;
  return double(bits) * (1.0 / 9007199254740992.0);
}

PGOLF_HD inline double uniform01(std::uint64_t seed, std::uint32_t stream, std::uint64_t index) {
  const Philox4x32 r = philox_draw(seed, stream, index);
  return bits_to_unit(r.v[0], r.v[1]);
}

// Standard normal by Box-Muller on one Philox block (the cosine branch only, so one draw per index).
PGOLF_HD inline double normal01(std::uint64_t seed, std::uint32_t stream, std::uint64_t index) {
  const Philox4x32 r = philox_draw(seed, stream, index);
  const double u1 = 1.0 - bits_to_unit(r.v[0], r.v[1]);  // (0, 1]: log stays finite
  const double u2 = bits_to_unit(r.v[2], r.v[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace pgolf
