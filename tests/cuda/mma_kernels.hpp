#pragma once

#include <vector>

// One warp's m16n8k16 products through ops/cuda/mma.cuh on the device, every operand through a
// loader with a leading dimension of its own. Row-major inputs: a 16x16, b 16x8 (k, n), b2 16x16,
// c 16x8 (fp32); a, b and b2 are replaced by their bf16 roundings (what the device multiplies).
//   nk:      c + a b, b read from its transpose (load_b_nk)
//   kn:      c + a b, b read as stored (load_b_kn)
//   chained: c + bf16(a b2) b, the 16x16 product kept in two accumulators and reused as the next A
//            (a_from_c), as a flash-attention kernel reuses its probabilities
struct MmaProducts {
  std::vector<float> nk, kn, chained;  // 16x8 each
};
MmaProducts mma_on_device(std::vector<float>& a, std::vector<float>& b, std::vector<float>& b2,
                          const std::vector<float>& c);
