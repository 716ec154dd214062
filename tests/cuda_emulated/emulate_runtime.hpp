// The host side of the CUDA emulation (emulate_cuda.hpp holds the device side): the runtime calls
// the library makes (memory, copies, streams, errors, device queries) and kernel launches, so the
// CUDA backend's host code runs unchanged on the CPU. tests/cuda_emulated/include/ puts this behind
// <cuda_runtime.h>, and the build rewrites each `k<<<grid, block, smem, stream>>>(args)` into
// emu::launch_kernel(emu::Cfg(grid, block, smem, stream), k, args).
//
// What it checks that the device would: launch configurations (threads per block, grid limits,
// dynamic shared memory against the kernel's opt-in limit), every pointer a kernel is handed as an
// argument (null, or inside or just past a live allocation: the device faults on pageable host
// memory), and every copy and memset stays inside one live allocation. What it cannot: streams
// (every call runs at once, in order, so a missing synchronisation between two streams does not
// show), host code that dereferences device memory (here both are host memory), pointers a kernel
// finds inside a struct argument, and the memory's real limits.
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emulate_cuda.hpp"

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalAddress = 700,
};
using cudaError_t = cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97, cudaDevAttrMultiProcessorCount = 16 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  int multiProcessorCount;
  std::size_t totalGlobalMem;
  std::size_t sharedMemPerBlockOptin;
};

namespace emu {
// The emulated device: an H100's limits.
inline constexpr int kSharedDefault = 48 * 1024, kSharedOptin = 227 * 1024, kSms = 132;
inline constexpr std::size_t kDeviceMemory = std::size_t(16) << 30;

struct State {
  std::map<std::uintptr_t, std::size_t> allocations;  // start -> bytes (one memory for every device)
  int device = 0;                                     // cudaSetDevice's
  std::map<const void*, int> smem_optin;              // kernel -> its dynamic shared memory limit
  cudaError_t last = cudaSuccess;
  std::size_t in_use = 0;
};
inline State& state() {
  static State s;
  return s;
}
// Devices on this node: PGOLF_EMU_DEVICES (1 to 8, default 1), so one node's data-parallel launch
// (a process per GPU, dist/nccl.cuh) runs here too.
inline int device_count() {
  static const int n = [] {
    const char* v = std::getenv("PGOLF_EMU_DEVICES");
    const int k = v ? std::atoi(v) : 1;
    if (k < 1 || k > 8) {
      std::fprintf(stderr, "CUDA emulation: PGOLF_EMU_DEVICES=%s is not 1 to 8\n", v);
      std::exit(2);
    }
    return k;
  }();
  return n;
}
inline bool valid_device(int d) { return d >= 0 && d < device_count(); }
inline cudaError_t fail(cudaError_t e) {
  state().last = e;
  return e;
}
// Whether [p, p + bytes) lies inside one live allocation.
inline bool device_range(const void* p, std::size_t bytes) {
  auto& a = state().allocations;
  const auto u = reinterpret_cast<std::uintptr_t>(p);
  auto it = a.upper_bound(u);
  if (it == a.begin()) return false;
  --it;
  return u >= it->first && u + bytes <= it->first + it->second;
}
// An access outside the allocations: refused (the device might corrupt memory or fault) with the
// reason on stderr, as an error the caller's check reports.
inline cudaError_t outside(const char* what, const void* p, std::size_t bytes) {
  std::fprintf(stderr, "CUDA emulation: %s: %zu bytes at %p are not inside one allocation\n", what, bytes, p);
  return fail(cudaErrorInvalidValue);
}

alignas(128) inline char dynamic_shared_bytes[kSharedOptin];
inline char* dynamic_shared() { return dynamic_shared_bytes; }

// A kernel argument as the device would take it: a pointer must be null or point inside (or just
// past) a live allocation; anything else passes by value.
struct ArgumentCheck {
  bool ok;
  const void* address;
};
template <class X>
ArgumentCheck check_argument(const X& x) {
  if constexpr (std::is_pointer_v<X> && !std::is_function_v<std::remove_pointer_t<X>>)
    return {x == nullptr || device_range(x, 0), static_cast<const void*>(x)};
  else
    return {true, nullptr};
}

struct Cfg {
  dim3 grid, block;
  std::size_t smem;
  cudaStream_t stream;
  Cfg(dim3 g, dim3 b, std::size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), smem(s), stream(st) {}
};

// A launch as the device would take it: the configuration checked (an error for cudaGetLastError,
// nothing run), the arguments converted to the parameters' types once, each thread calling the
// kernel with its own copy of them.
template <class... P, class... A>
void launch_kernel(const Cfg& c, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch_kernel: argument count differs from the kernel's");
  const unsigned long long threads = 1ull * c.block.x * c.block.y * c.block.z;
  const bool shape_ok = threads >= 1 && threads <= 1024 && c.block.z <= 64 && c.grid.x >= 1 && c.grid.y >= 1 &&
                        c.grid.z >= 1 && c.grid.x <= 0x7fffffffu && c.grid.y <= 65535 && c.grid.z <= 65535;
  if (!shape_ok) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  int limit = kSharedDefault;
  if (auto it = state().smem_optin.find(reinterpret_cast<const void*>(kernel)); it != state().smem_optin.end())
    limit = it->second;
  if (c.smem > std::size_t(limit)) {
    fail(cudaErrorInvalidValue);
    return;
  }
  std::memset(dynamic_shared_bytes, 0xff, c.smem);
  const std::tuple<P...> params(static_cast<P>(std::forward<A>(args))...);
  // A host pointer handed to a kernel: on the device the kernel faults at its first access and the
  // context is lost (an illegal address); here nothing runs and the launch reports that error.
  const auto checks = std::apply(
      [](const auto&... p) { return std::array<ArgumentCheck, sizeof...(P)>{check_argument(p)...}; }, params);
  for (std::size_t i = 0; i < checks.size(); ++i)
    if (!checks[i].ok) {
      std::fprintf(stderr, "CUDA emulation: kernel argument %zu (%p) is not device memory\n", i, checks[i].address);
      fail(cudaErrorIllegalAddress);
      return;
    }
  run_grid(c.grid, c.block, [&] { std::apply(kernel, params); });
}
}  // namespace emu

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
  }
  return "unknown error";
}
inline cudaError_t cudaGetLastError() { return std::exchange(emu::state().last, cudaSuccess); }
inline cudaError_t cudaPeekAtLastError() { return emu::state().last; }

inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = emu::device_count();
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = emu::state().device;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  if (!emu::valid_device(d)) return emu::fail(cudaErrorInvalidDevice);
  emu::state().device = d;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (!emu::valid_device(d)) return emu::fail(cudaErrorInvalidDevice);
  *p = {};
  std::snprintf(p->name, sizeof p->name, "CUDA emulation on the CPU");
  p->major = 9, p->minor = 0, p->multiProcessorCount = emu::kSms;
  p->totalGlobalMem = emu::kDeviceMemory, p->sharedMemPerBlockOptin = emu::kSharedOptin;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (!emu::valid_device(d)) return emu::fail(cudaErrorInvalidDevice);
  switch (a) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = emu::kSharedOptin; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *v = emu::kSms; return cudaSuccess;
  }
  return emu::fail(cudaErrorInvalidValue);
}
template <class... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute a, int value) {
  if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > emu::kSharedOptin)
    return emu::fail(cudaErrorInvalidValue);
  emu::state().smem_optin[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}

inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  auto& s = emu::state();
  if (s.in_use + bytes > emu::kDeviceMemory) return emu::fail(cudaErrorMemoryAllocation);
  // 256-byte aligned as cudaMalloc's; poisoned (0xff: NaN) so a read before any write shows.
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256;
  void* m = std::aligned_alloc(256, rounded);
  if (!m) return emu::fail(cudaErrorMemoryAllocation);
  std::memset(m, 0xff, rounded);
  s.allocations[reinterpret_cast<std::uintptr_t>(m)] = bytes;
  s.in_use += bytes;
  *p = m;
  return cudaSuccess;
}
template <class T>
cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  auto& s = emu::state();
  auto it = s.allocations.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == s.allocations.end()) return emu::fail(cudaErrorInvalidDevicePointer);
  s.in_use -= it->second;
  s.allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(std::size_t* free, std::size_t* total) {
  *total = emu::kDeviceMemory;
  *free = emu::kDeviceMemory - emu::state().in_use;
  return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (dst_device && !emu::device_range(dst, bytes)) return emu::outside("cudaMemcpy's destination", dst, bytes);
  if (src_device && !emu::device_range(src, bytes)) return emu::outside("cudaMemcpy's source", src, bytes);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, bytes, kind);
}
inline cudaError_t cudaMemset(void* p, int byte, std::size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!emu::device_range(p, bytes)) return emu::outside("cudaMemset", p, bytes);
  std::memset(p, byte, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int byte, std::size_t bytes, cudaStream_t = nullptr) {
  return cudaMemset(p, byte, bytes);
}

inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
  static char streams;
  *s = reinterpret_cast<cudaStream_t>(&streams);
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
