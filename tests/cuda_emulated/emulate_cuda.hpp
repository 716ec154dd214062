// A host emulation of exactly the CUDA features that the library's kernels use (ops/cuda/common.cuh's
// helpers, flash attention's, the loss row kernels' and the others), so their index arithmetic,
// masks, tails, reductions and the placement of their barriers can be checked on a machine without
// a GPU. emulate_runtime.hpp adds the host side (memory, launches, cuBLASLt, CUB) for whole models.
// Not CUDA's semantics in general:
//   - blocks run one after another; a block's threads are fibers on the calling thread,
//     each running until it reaches a barrier, then the next, round robin. So a barrier missing from
//     a kernel shows as a wrong result (a thread reads what another has not written yet), and
//     threads of a block that reach different barriers (a __syncthreads some of them skip or
//     return before) or wait at one the others never reach stop the test with a message;
//   - __shfl_xor_sync and __shfl_up_sync exchange through a per-block array between two warp
//     barriers;
//   - __shared__ is `static`: one array per kernel instantiation, which the block's threads share
//     (one block runs at a time);
//   - a wmma fragment is the whole 16x16 tile, held by every lane; load_matrix_sync reads it without
//     a barrier (the kernel must __syncwarp after lanes write what a fragment loads, as on the
//     device), store_matrix_sync is written by lane 0 between two warp barriers; mma_sync sums in
//     fp32 in k order (the tensor cores' internal order differs: results agree to rounding only);
//   - bf16 conversions round to nearest even, __expf/__logf are std::exp/std::log;
//   - mma.sync m16n8k16 (ops/cuda/mma.cuh) is a warp collective: the lanes' registers go to a
//     per-warp table between two warp barriers, and each lane forms its four outputs from the lanes
//     that hold its row of A and its column of B, by the PTX ISA's fragment table, summing in fp32
//     in k order;
//   - atomicAdd on float is a plain addition (one thread runs at a time);
//   - dynamic shared memory is one static array (one block at a time), filled with 0xff bytes (NaN)
//     before each launch.
// Alignment, as the device demands it: a wmma operand's pointer and leading dimension are checked
// here; the kernels' vector loads and stores (uint4, float4, bf16x2 casts) by UBSan's alignment
// check, which every emulated build compiles in (tests/cuda_emulated/CMakeLists.txt). Static
// __shared__ arrays take the host compiler's alignment, which may exceed nvcc's.
// What it cannot check: the real fragment layouts, the shared-memory limit, occupancy and speed
// (emulate_runtime.hpp checks launch configurations against the device's limits).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include <ucontext.h>

// Library code that must take another path here than on the device (ops/cuda/mma.cuh's inline PTX).
#define PGOLF_CUDA_EMULATION 1

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
inline EmuDim threadIdx, blockIdx;  // the running fiber's (Fibers swaps them)
inline EmuDim gridDim, blockDim;
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
namespace emu {
inline unsigned linear_tid = 0;  // threadIdx as one index: its warp is linear_tid / 32
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __expf(float x) { return std::exp(x); }
inline float atomicAdd(float* address, float val) {
  const float old = *address;
  *address = old + val;
  return old;
}
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }

struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
struct alignas(8) float2 {
  float x, y;
};
inline float2 make_float2(float a, float b) { return {a, b}; }
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
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
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
// A fiber's saved context. On x86-64 the switch is a few instructions (the callee-saved registers,
// MXCSR and the x87 control word pushed on the fiber's own stack): swapcontext would also save and
// restore the signal mask with a system call at every barrier, most of a whole model's time.
#if defined(__x86_64__)
extern "C" void pgolf_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .weak pgolf_emu_switch
  .type pgolf_emu_switch, @function
pgolf_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pgolf_emu_switch, .-pgolf_emu_switch
)");
struct Context {
  void* sp = nullptr;
  // A fresh stack whose first switch "returns" into entry (which must never return).
  void start(char* stack, std::size_t bytes, void (*entry)()) {
    auto top = (reinterpret_cast<std::uintptr_t>(stack) + bytes) & ~std::uintptr_t(15);
    auto* slot = reinterpret_cast<std::uint64_t*>(top);
    slot[-2] = reinterpret_cast<std::uint64_t>(entry);  // after `ret`, rsp = top - 8, as after a call
    for (int r = 3; r <= 8; ++r) slot[-r] = 0;          // rbp, rbx, r12..r15
    std::uint32_t control[2];
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
    std::memcpy(&slot[-9], control, 8);
    sp = &slot[-9];
  }
  static void jump(Context& from, Context& to) { pgolf_emu_switch(&from.sp, to.sp); }
};
#else
struct Context {
  ucontext_t uc{};
  void start(char* stack, std::size_t bytes, void (*entry)()) {
    getcontext(&uc);
    uc.uc_stack.ss_sp = stack;
    uc.uc_stack.ss_size = bytes;
    uc.uc_link = nullptr;
    makecontext(&uc, entry, 0);
  }
  static void jump(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
};
#endif

// The fibers that run one block's threads (all of a launch's blocks, in turn).
class Fibers {
 public:
  static constexpr std::size_t kStack = 128 * 1024;
  struct State {
    EmuDim thread, block;
    unsigned linear = 0;
  };

  // body(t) for t = 0..n-1, each on its own fiber, until all have returned.
  void run(unsigned n, const std::function<void(unsigned)>& body) {
    while (stacks_.size() < n) stacks_.push_back(std::unique_ptr<char[]>(new char[kStack]));  // untouched until used
    contexts_.assign(n, Context{});
    states_.assign(n, State{});
    done_.assign(n, false);
    body_ = &body;
    live_ = n;
    for (unsigned t = 0; t < n; ++t) contexts_[t].start(stacks_[t].get(), kStack, &Fibers::entry);
    cur_ = n - 1;
    while (live_ > 0) {
      const unsigned to = next_live(cur_);
      cur_ = to;
      restore(to);
      Context::jump(main_, contexts_[to]);  // back here when fiber `cur_` has finished
    }
  }
  // Gives the thread to the next fiber that has not returned; false when this is the only one.
  bool yield() {
    const unsigned from = cur_, to = next_live(from);
    if (to == from) return false;
    save(from);
    cur_ = to;
    restore(to);
    Context::jump(contexts_[from], contexts_[to]);
    return true;
  }
  unsigned live() const { return live_; }
  unsigned long long progress = 0;  // arrivals at barriers and returns: what a waiting fiber watches

 private:
  static void entry();
  unsigned next_live(unsigned from) const {
    const unsigned n = unsigned(done_.size());
    for (unsigned k = 1; k <= n; ++k)
      if (!done_[(from + k) % n]) return (from + k) % n;
    return from;
  }
  void save(unsigned t) { states_[t] = {threadIdx, blockIdx, linear_tid}; }
  void restore(unsigned t) { threadIdx = states_[t].thread, blockIdx = states_[t].block, linear_tid = states_[t].linear; }

  std::vector<std::unique_ptr<char[]>> stacks_;
  std::vector<Context> contexts_;
  std::vector<State> states_;
  std::vector<bool> done_;
  Context main_, finished_;
  const std::function<void(unsigned)>* body_ = nullptr;
  unsigned cur_ = 0, live_ = 0;
};
inline Fibers& fibers() {
  static Fibers f;
  return f;
}
inline void Fibers::entry() {
  Fibers& f = fibers();
  (*f.body_)(f.cur_);
  f.done_[f.cur_] = true;
  --f.live_;
  ++f.progress;
  Context::jump(f.finished_, f.main_);  // never resumed
}

[[noreturn]] inline void stop(const char* why) {
  std::fprintf(stderr, "CUDA emulation: %s (block %u,%u,%u, thread %u)\n", why, blockIdx.x, blockIdx.y, blockIdx.z,
               linear_tid);
  std::abort();
}

// A barrier of `expected` fibers. `site` tells apart the kernel's own barriers from the one after
// each block: threads of a block meeting at different ones is a kernel bug the device would not forgive.
struct Barrier {
  unsigned expected = 0, arrived = 0;
  unsigned long long generation = 0;
  int site = -1;
  void wait(int at) {
    Fibers& f = fibers();
    if (arrived == 0) site = at;
    if (site != at) stop("threads of a block reach different barriers (a __syncthreads some threads skip?)");
    ++f.progress;
    const unsigned long long g = generation;
    if (++arrived == expected) {
      arrived = 0, ++generation;
      return;
    }
    // Round robin gives every other live fiber a turn between two checks: a whole round without
    // progress means they all wait for something that will not come.
    unsigned long long seen = f.progress;
    while (generation == g) {
      if (!f.yield()) stop("a thread waits at a barrier that no other thread of its block can reach");
      if (generation != g) break;
      if (f.progress == seen) stop("the threads of a block wait at barriers that can never complete");
      seen = f.progress;
    }
  }
};

struct BlockSync {
  Barrier* block;
  Barrier* warp[32];
  std::uint64_t* exchange;  // one value per thread
};
inline BlockSync sync;
inline constexpr int kKernelBarrier = 0, kWarpBarrier = 1, kBlockEnd = 2;
}  // namespace emu

inline void __syncthreads() { emu::sync.block->wait(emu::kKernelBarrier); }
inline void __syncwarp() { emu::sync.warp[emu::linear_tid / 32]->wait(emu::kWarpBarrier); }
namespace emu {
// Lane `from`'s v, for every lane of the warp (all of them call it, as __shfl_*_sync's mask says).
template <class T>
T exchange(T v, int from) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable_v<T>);
  const int t = int(linear_tid), w = t / 32;
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
  return emu::exchange(v, int(emu::linear_tid % 32) ^ o);
}
// Lanes below delta keep their own value, as on the device.
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned delta) {
  const int lane = int(emu::linear_tid % 32);
  return emu::exchange(v, lane >= int(delta) ? lane - int(delta) : lane);
}

namespace emu {
// d += a b as mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (see ops/cuda/mma.cuh for the
// fragments). Lane l holds A[l/4 (+8)][2(l%4) (+8) + 0/1] in a[0..3], B[2(l%4) (+8) + 0/1][l/4] in
// b[0..1], and receives D[l/4 (+8)][2(l%4) + 0/1].
struct MmaTable {
  std::uint32_t a[32][4], b[32][2];
};
inline MmaTable mma_table[32];  // one per warp of the block
inline float bf16_half(std::uint32_t r, int h) {
  return __bfloat162float(__nv_bfloat16{std::uint16_t(h ? r >> 16 : r & 0xffffu)});
}
// A[r][k] and B[k][n] from the lanes that hold them.
inline float table_a(const MmaTable& t, int r, int k) {
  return bf16_half(t.a[(r % 8) * 4 + (k % 8) / 2][(r / 8) + 2 * (k / 8)], k % 2);
}
inline float table_b(const MmaTable& t, int k, int n) { return bf16_half(t.b[n * 4 + (k % 8) / 2][k / 8], k % 2); }
inline void mma_16x8x16_bf16(float d[4], const std::uint32_t a[4], const std::uint32_t b[2]) {
  const int lane = int(linear_tid % 32);
  MmaTable& t = mma_table[linear_tid / 32];
  __syncwarp();  // the previous product's readers are done with the table
  std::memcpy(t.a[lane], a, sizeof t.a[lane]);
  std::memcpy(t.b[lane], b, sizeof t.b[lane]);
  __syncwarp();
  for (int i = 0; i < 4; ++i) {
    const int r = lane / 4 + 8 * (i / 2), n = 2 * (lane % 4) + i % 2;
    float s = d[i];
    for (int k = 0; k < 16; ++k) s += table_a(t, r, k) * table_b(t, k, n);
    d[i] = s;
  }
}
}  // namespace emu

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
// The emulation's own fragment loops are not the kernels' accesses: UBSan's alignment check
// (CMakeLists.txt) skips them, where most of an emulated tensor-core kernel's time goes.
#define PGOLF_EMU_FRAGMENT_CODE __attribute__((no_sanitize("alignment")))
template <class F>
PGOLF_EMU_FRAGMENT_CODE void fill_fragment(F& f, float x) {
  for (float& e : f.v) e = x;
}
inline float value(const __nv_bfloat16& b) { return __bfloat162float(b); }
inline float value(const float& b) { return b; }
// What the device demands of a fragment's memory (CUDA Programming Guide, "Warp Matrix Functions"):
// mptr 256-bit aligned, ldm a multiple of 16 bytes (8 bf16 or 4 floats). A device that is not
// given them faults ("misaligned address") or reads a wrong tile; the emulation would not notice.
template <class P>
void check_operand(const P* p, unsigned ldm) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) emu::stop("wmma operand pointer is not 32-byte aligned");
  if (ldm * sizeof(P) % 16 != 0) emu::stop("wmma leading dimension is not a multiple of 16 bytes");
}
template <class Use, class T, class Layout, class P>
PGOLF_EMU_FRAGMENT_CODE void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const P* p, unsigned ldm) {
  check_operand(p, ldm);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.v[r * 16 + c] = std::is_same_v<Layout, col_major> ? value(p[c * ldm + r]) : value(p[r * ldm + c]);
}
template <class T>
PGOLF_EMU_FRAGMENT_CODE void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const float* p, unsigned ldm,
                                              layout_t) {
  check_operand(p, ldm);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r * 16 + c] = p[r * ldm + c];
}
template <class T>
PGOLF_EMU_FRAGMENT_CODE void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm,
                                               layout_t) {
  check_operand(p, ldm);
  __syncwarp();  // no lane still reads the old tile (on the device each lane stores only its own part)
  if (emu::linear_tid % 32 == 0)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 16; ++c) p[r * ldm + c] = f.v[r * 16 + c];
  __syncwarp();
}
// Every lane of a warp holds the same tiles, so the warp's first lane computes the product and the
// others take it when their operands are the same bits (else they compute their own).
struct MmaMemo {
  float a[256], b[256], c[256], d[256];
  bool valid = false;
};
inline MmaMemo mma_memo[32];  // one per warp of the block
template <class A, class B, class C>
PGOLF_EMU_FRAGMENT_CODE void mma_sync(C& d, const A& a, const B& b, const C& c) {
  MmaMemo& m = mma_memo[emu::linear_tid / 32];
  if (m.valid && std::memcmp(m.a, a.v, sizeof m.a) == 0 && std::memcmp(m.b, b.v, sizeof m.b) == 0 &&
      std::memcmp(m.c, c.v, sizeof m.c) == 0) {
    std::memcpy(d.v, m.d, sizeof m.d);
    return;
  }
  float out[256];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.v[i * 16 + j];
      for (int k = 0; k < 16; ++k) s += a.v[i * 16 + k] * b.v[k * 16 + j];
      out[i * 16 + j] = s;
    }
  std::memcpy(m.a, a.v, sizeof m.a);
  std::memcpy(m.b, b.v, sizeof m.b);
  std::memcpy(m.c, c.v, sizeof m.c);
  std::memcpy(m.d, out, sizeof out);
  m.valid = true;
  std::memcpy(d.v, out, sizeof out);
}
}  // namespace nvcuda::wmma

namespace emu {
// Runs body() as every thread of every block of `grid` (blocks in x, then y, then z order), with
// `block` threads per block (at most 1024; a last warp may be partial).
template <class F>
void run_grid(dim3 grid, dim3 block, F&& body) {
  const unsigned n = block.x * block.y * block.z;
  gridDim = {grid.x, grid.y, grid.z};
  blockDim = {block.x, block.y, block.z};
  Barrier whole{n};
  std::vector<Barrier> warps;
  for (unsigned w = 0; w * 32 < n; ++w) warps.push_back(Barrier{std::min(32u, n - 32 * w)});
  BlockSync s{&whole, {}, nullptr};
  for (unsigned w = 0; w * 32 < n; ++w) s.warp[w] = &warps[w];
  std::vector<std::uint64_t> exchange(n);
  s.exchange = exchange.data();
  sync = s;
  // A block barrier after each block keeps the blocks apart.
  fibers().run(n, [&](unsigned t) {
    linear_tid = t;
    threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          blockIdx = {bx, by, bz};
          body();
          whole.wait(kBlockEnd);
        }
  });
}

// Runs body() as every thread of every block of a (gx, gy) grid of blocks of `threads` threads.
template <class F>
void launch(unsigned gx, unsigned gy, F&& body, unsigned block_threads = 128) {
  run_grid(dim3(gx, gy), dim3(block_threads), body);
}
}  // namespace emu
