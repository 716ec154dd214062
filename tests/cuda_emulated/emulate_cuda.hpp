// A host emulation of exactly the CUDA features that the kernels under tests/cuda_emulated use
// (ops/cuda/common.cuh's helpers, flash attention's, the loss row kernels' and the others), so their
// index arithmetic, masks, tails, reductions and the placement of their barriers can be checked on
// a machine without a GPU.
// Not CUDA's semantics in general:
//   - blocks run one after another, on the same std::threads (128 by default); __syncthreads and
//     __syncwarp are std::barriers (so a barrier missing from the kernel shows as a data race or a
//     wrong result here, as it would on the device);
//   - __shfl_xor_sync and __shfl_up_sync exchange through a per-block array between two warp
//     barriers;
//   - __shared__ is `static`: one array per kernel instantiation, which the block's threads share
//     (one block runs at a time);
//   - a wmma fragment is the whole 16x16 tile, held by every lane; load_matrix_sync reads it without
//     a barrier (the kernel must __syncwarp after lanes write what a fragment loads, as on the
//     device), store_matrix_sync is written by lane 0 between two warp barriers; mma_sync sums in
//     fp32 in k order (the tensor cores' internal order differs: results agree to rounding only);
//   - bf16 conversions round to nearest even, __expf/__logf are std::exp/std::log;
//   - atomicAdd on float is std::atomic_ref<float>::fetch_add (the block's threads run concurrently);
//   - dynamic shared memory is one static array (one block at a time).
// What it cannot check: the real fragment layouts, alignment, the shared-memory limit, occupancy,
// the launch configuration in FlashAttention (the test launches the kernels itself) and speed.
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct EmuDim {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmuDim threadIdx, blockIdx;
inline EmuDim gridDim, blockDim;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __expf(float x) { return std::exp(x); }
inline float atomicAdd(float* address, float val) { return std::atomic_ref<float>(*address).fetch_add(val); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }

struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

struct __nv_bfloat16 {
  std::uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  if (std::isnan(f)) return {std::uint16_t(0x7fc0)};
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return {std::uint16_t(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) {
  const std::uint32_t u = std::uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return {__bfloat162float(v.x), __bfloat162float(v.y)}; }

namespace emu {
struct BlockSync {
  std::barrier<>* block;
  std::barrier<>* warp[32];
  std::uint64_t* exchange;  // one value per thread
};
inline BlockSync sync;
}  // namespace emu

inline void __syncthreads() { emu::sync.block->arrive_and_wait(); }
inline void __syncwarp() { emu::sync.warp[threadIdx.x / 32]->arrive_and_wait(); }
namespace emu {
// Lane `from`'s v, for every lane of the warp (all of them call it, as __shfl_*_sync's mask says).
template <class T>
T exchange(T v, int from) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable_v<T>);
  const int t = int(threadIdx.x), w = t / 32;
  __syncwarp();
  std::memcpy(&sync.exchange[t], &v, sizeof v);
  __syncwarp();
  T r;
  std::memcpy(&r, &sync.exchange[w * 32 + from], sizeof r);
  __syncwarp();
  return r;
}
}  // namespace emu
template <class T>
T __shfl_xor_sync(unsigned, T v, int o) {
  return emu::exchange(v, int(threadIdx.x % 32) ^ o);
}
// Lanes below delta keep their own value, as on the device.
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned delta) {
  const int lane = int(threadIdx.x % 32);
  return emu::exchange(v, lane >= int(delta) ? lane - int(delta) : lane);
}

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  float v[256];  // element (r, c) at v[16 r + c]
};
template <class F>
void fill_fragment(F& f, float x) {
  for (float& e : f.v) e = x;
}
inline float value(const __nv_bfloat16& b) { return __bfloat162float(b); }
inline float value(const float& b) { return b; }
template <class Use, class T, class Layout, class P>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const P* p, unsigned ldm) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.v[r * 16 + c] = std::is_same_v<Layout, col_major> ? value(p[c * ldm + r]) : value(p[r * ldm + c]);
}
template <class T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const float* p, unsigned ldm, layout_t) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r * 16 + c] = p[r * ldm + c];
}
template <class T>
void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm, layout_t) {
  __syncwarp();  // no lane still reads the old tile (on the device each lane stores only its own part)
  if (threadIdx.x % 32 == 0)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 16; ++c) p[r * ldm + c] = f.v[r * 16 + c];
  __syncwarp();
}
template <class A, class B, class C>
void mma_sync(C& d, const A& a, const B& b, const C& c) {
  float out[256];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.v[i * 16 + j];
      for (int k = 0; k < 16; ++k) s += a.v[i * 16 + k] * b.v[k * 16 + j];
      out[i * 16 + j] = s;
    }
  std::memcpy(d.v, out, sizeof out);
}
}  // namespace nvcuda::wmma

namespace emu {
// Runs body() as every thread of every block of a (gx, gy) grid of blocks of `threads` threads (a
// multiple of 32, at most 1024).
template <class F>
void launch(unsigned gx, unsigned gy, F&& body, unsigned block_threads = 128) {
  gridDim = {gx, gy, 1};
  blockDim = {block_threads, 1, 1};
  std::barrier<> block(block_threads);
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  BlockSync s{&block, {}, nullptr};
  for (unsigned w = 0; w < block_threads / 32; ++w) s.warp[w] = warps.emplace_back(std::make_unique<std::barrier<>>(32)).get();
  std::vector<std::uint64_t> exchange(block_threads);
  s.exchange = exchange.data();
  sync = s;
  // One set of threads runs the blocks in turn (starting threads per block cost most of the
  // test's time); a block barrier after each keeps the blocks apart.
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < block_threads; ++t)
    threads.emplace_back([&, t] {
      threadIdx = {t, 0, 0};
      for (unsigned by = 0; by < gy; ++by)
        for (unsigned bx = 0; bx < gx; ++bx) {
          blockIdx = {bx, by, 0};
          body();
          block.arrive_and_wait();
        }
    });
  for (auto& th : threads) th.join();
}
}  // namespace emu
