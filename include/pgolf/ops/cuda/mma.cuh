// One warp's bf16 tensor-core product on registers: PTX mma.sync m16n8k16 (sm_80 and newer), fp32
// accumulate. Unlike nvcuda::wmma, the place of every element in every lane is fixed by the PTX ISA
// ("Matrix Fragments for mma.m16n8k16 with floating point type"), so a kernel can work on an
// accumulator where it lies (scale rows, mask, exponentiate, reuse it as the next product's A) with
// no trip through shared memory: what a flash-attention kernel with its scores and output in
// registers is built on. tests/cuda/test_mma_cuda.cpp checks the layout on the device (and under
// the CUDA emulation, which rebuilds the tiles from the same table independently).
//
// Lane l of the warp, g = l / 4 (its row group), q = l % 4 (its pair of columns); each 32-bit
// register holds two bf16, the lower index in the low half:
//   A 16x16 (row):  a[0] = A[g][2q, 2q+1]    a[1] = A[g+8][2q, 2q+1]
//                   a[2] = A[g][2q+8, 2q+9]  a[3] = A[g+8][2q+8, 2q+9]
//   B 16x8 (col):   b[0] = B[2q, 2q+1][g]    b[1] = B[2q+8, 2q+9][g]
//   C, D 16x8 fp32: c[0], c[1] = C[g][2q, 2q+1]   c[2], c[3] = C[g+8][2q, 2q+1]
#pragma once

#include <cstdint>

#include "pgolf/ops/cuda/common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "pgolf/ops/cuda/mma.cuh needs sm_80 or newer (mma.sync m16n8k16 with bf16 operands)"
#endif

namespace pgolf::ops::cuda {

namespace mma {

struct FragA {
  std::uint32_t x[4];
};
struct FragB {
  std::uint32_t x[2];
};
struct FragC {
  float x[4];
};

__device__ __forceinline__ int group(int lane) { return lane / 4; }
__device__ __forceinline__ int pair(int lane) { return lane % 4; }
// Row and column of accumulator element i (0..3) of this lane.
__device__ __forceinline__ int c_row(int lane, int i) { return lane / 4 + 8 * (i / 2); }
__device__ __forceinline__ int c_col(int lane, int i) { return 2 * (lane % 4) + i % 2; }

__device__ __forceinline__ void zero(FragC& c) {
  for (int i = 0; i < 4; ++i) c.x[i] = 0.f;
}

// Two bf16 in one register, lo in the low half.
__device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}
__device__ __forceinline__ std::uint32_t pack_bits(std::uint16_t lo, std::uint16_t hi) {
  return std::uint32_t(lo) | std::uint32_t(hi) << 16;
}
__device__ __forceinline__ std::uint32_t load_pair(const bf16* p) { return *reinterpret_cast<const std::uint32_t*>(p); }

// A from a row-major tile at a (element (r, k) at a[r * ld + k]); ld even, a 4-byte aligned.
__device__ __forceinline__ void load_a(FragA& f, const bf16* a, int ld, int lane) {
  const int g = group(lane), q = pair(lane);
  f.x[0] = load_pair(a + g * ld + 2 * q);
  f.x[1] = load_pair(a + (g + 8) * ld + 2 * q);
  f.x[2] = load_pair(a + g * ld + 2 * q + 8);
  f.x[3] = load_pair(a + (g + 8) * ld + 2 * q + 8);
}
// B from its transpose, row-major: element (k, n) at bt[n * ld + k] (keys' rows for S = Q K^T).
__device__ __forceinline__ void load_b_nk(FragB& f, const bf16* bt, int ld, int lane) {
  const int g = group(lane), q = pair(lane);
  f.x[0] = load_pair(bt + g * ld + 2 * q);
  f.x[1] = load_pair(bt + g * ld + 2 * q + 8);
}
// B row-major: element (k, n) at b[k * ld + n] (values' rows for O = P V). The two halves of a
// register lie in different rows: four 16-bit reads (ldmatrix .trans would do it in one).
__device__ __forceinline__ void load_b_kn(FragB& f, const bf16* b, int ld, int lane) {
  const int g = group(lane), q = pair(lane);
  const std::uint16_t* u = reinterpret_cast<const std::uint16_t*>(b);
  f.x[0] = pack_bits(u[(2 * q) * ld + g], u[(2 * q + 1) * ld + g]);
  f.x[1] = pack_bits(u[(2 * q + 8) * ld + g], u[(2 * q + 9) * ld + g]);
}
// The 16x16 A of the next product from two 16x8 accumulators side by side (columns 0-7 in lo,
// 8-15 in hi), rounded to bf16: the C and A layouts agree, so no lane exchanges anything.
__device__ __forceinline__ void a_from_c(FragA& f, const FragC& lo, const FragC& hi) {
  f.x[0] = pack(lo.x[0], lo.x[1]);
  f.x[1] = pack(lo.x[2], lo.x[3]);
  f.x[2] = pack(hi.x[0], hi.x[1]);
  f.x[3] = pack(hi.x[2], hi.x[3]);
}
// This lane's four elements of a 16x8 fp32 tile at d (row-major, leading dimension ld).
__device__ __forceinline__ void store_c(float* d, int ld, const FragC& c, int lane) {
  for (int i = 0; i < 4; ++i) d[c_row(lane, i) * ld + c_col(lane, i)] = c.x[i];
}

// d += a b, one warp, every lane with its fragments (mma.sync.aligned: all 32 lanes take part).
__device__ __forceinline__ void mma_16x8x16(FragC& d, const FragA& a, const FragB& b) {
#if defined(PGOLF_CUDA_EMULATION)
  ::emu::mma_16x8x16_bf16(d.x, a.x, b.x);
#elif defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d.x[0]), "+f"(d.x[1]), "+f"(d.x[2]), "+f"(d.x[3])
      : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b.x[0]), "r"(b.x[1]));
#endif
}

}  // namespace mma

}  // namespace pgolf::ops::cuda
