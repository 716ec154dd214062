// IEEE binary16 on the host: float <-> fp16 bits with round-to-nearest-even, for fp16 scales and
// passthrough tensors in exported artifacts (bit-compatible with PyTorch's .half()).
#pragma once

#include <bit>
#include <cstdint>

namespace pgolf {

constexpr std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t mant = x & 0x7fffffu;
  const int exp = int((x >> 23) & 0xffu);
  if (exp == 0xff) return std::uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf / NaN
  const int e = exp - 127 + 15;
  if (e >= 0x1f) return std::uint16_t(sign | 0x7c00u);  // overflow to inf
  if (e <= 0) {                                          // subnormal half (or zero)
    if (e < -10) return std::uint16_t(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return std::uint16_t(sign | h);
  }
  std::uint32_t h = sign | (std::uint32_t(e) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry rounds up into the exponent
  return std::uint16_t(h);
}

constexpr float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    int e = -14;
    while (!(mant & 0x400u)) mant <<= 1, --e;  // normalise the subnormal
    mant &= 0x3ffu;
    return std::bit_cast<float>(sign | (std::uint32_t(e + 127) << 23) | (mant << 13));
  }
  return std::bit_cast<float>(sign | (std::uint32_t(exp - 15 + 127) << 23) | (mant << 13));
}

}  // namespace pgolf
