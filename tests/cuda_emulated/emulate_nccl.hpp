// The NCCL emulation in place of the toolkit's nccl.h: what dist/nccl.cuh calls (unique id,
// communicator set-up and teardown, all-reduce, broadcast, errors). Ranks are processes, one per
// emulated GPU as with NCCL; a communicator's ranks meet in a file they all map (shared memory),
// named by the ncclUniqueId that rank 0 made and handed to the others (over MPI or the TCP
// rendezvous: the library's own code does that part).
//
// What it checks, where NCCL would hang, corrupt memory or fault: every rank makes the same call
// (collective, count, type, operation, root) in the same order; buffers lie inside one device
// allocation (emulate_runtime.hpp); a peer that aborted (ncclCommAbort) or stopped answering for
// PGOLF_EMU_NCCL_TIMEOUT seconds (default 120) fails the call instead of hanging it, with a message.
// What it cannot: streams (a collective completes before it returns), NCCL's own algorithms.
// Sums are formed in rank order, so every rank holds the same bits (as NCCL's ring all-reduce);
// bf16 sums round each partial sum to bf16.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <thread>

#include "emulate_runtime.hpp"

#define NCCL_UNIQUE_ID_BYTES 128
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};
enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
};
enum ncclDataType_t {
  ncclInt8 = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclFloat32 = 7,
  ncclFloat64 = 8,
  ncclBfloat16 = 9,
};
enum ncclRedOp_t { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 };

namespace emu::nccl {

inline constexpr int kMaxRanks = 8;
inline constexpr std::size_t kChunk = std::size_t(1) << 20;  // bytes per rank per round
inline constexpr std::size_t kHeader = 4096;
inline constexpr std::uint32_t kReady = 0x4e43434cu;

enum class Op : int { all_reduce = 1, broadcast = 2 };
struct Call {
  Op op;
  int type, redop, root;
  std::size_t count;
  bool operator==(const Call&) const = default;
};
// The shared file's header. Atomics on shared memory are address-free for these sizes.
struct Shared {
  std::atomic<std::uint32_t> ready;
  std::atomic<int> attached;
  std::atomic<int> aborted;  // 1 + the rank that called ncclCommAbort
  std::atomic<std::uint32_t> arrived, generation;
  int nranks;
  Call calls[kMaxRanks];
};
static_assert(sizeof(Shared) <= kHeader);

inline const char* op_name(Op op) { return op == Op::all_reduce ? "ncclAllReduce" : "ncclBroadcast"; }
inline std::string seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g s", s);
  return b;
}
inline double timeout_s() {
  const char* v = std::getenv("PGOLF_EMU_NCCL_TIMEOUT");
  return v ? std::atof(v) : 120.0;
}
inline std::size_t type_size(int type) {
  switch (type) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
  }
  return 0;
}

}  // namespace emu::nccl

struct ncclComm {
  int rank = 0, nranks = 0;
  int fd = -1;
  std::size_t bytes = 0;
  emu::nccl::Shared* shared = nullptr;
  char* slots = nullptr;  // nranks slots of kChunk bytes
  bool broken = false;    // a call failed: the ranks no longer agree on where they are
};
using ncclComm_t = ncclComm*;

namespace emu::nccl {

inline ncclResult_t complain(ncclResult_t r, const ncclComm* c, const std::string& what) {
  if (c)
    std::fprintf(stderr, "NCCL emulation: rank %d of %d: %s\n", c->rank, c->nranks, what.c_str());
  else
    std::fprintf(stderr, "NCCL emulation: %s\n", what.c_str());
  return r;
}

// Waits until fn() holds, failing when a peer aborted or nothing happened for the timeout.
template <class F>
ncclResult_t wait_for(ncclComm* c, const char* what, F fn) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s());
  for (int spin = 0; !fn(); ++spin) {
    if (const int a = c->shared->aborted.load()) {
      c->broken = true;
      return complain(ncclRemoteError, c, "rank " + std::to_string(a - 1) + " aborted the communicator (" + what + ")");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      c->broken = true;
      return complain(ncclSystemError, c,
                      std::string("its peers did not arrive within ") + seconds(timeout_s()) + " (" + what +
                          "; PGOLF_EMU_NCCL_TIMEOUT sets the wait)");
    }
    if (spin < 64)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return ncclSuccess;
}

// Every rank arrives before any leaves (sense by generation: the last one in opens it).
inline ncclResult_t barrier(ncclComm* c, const char* what) {
  Shared& s = *c->shared;
  const std::uint32_t g = s.generation.load();
  if (s.arrived.fetch_add(1) + 1 == std::uint32_t(c->nranks)) {
    s.arrived.store(0);
    s.generation.fetch_add(1);
    return ncclSuccess;
  }
  return wait_for(c, what, [&] { return s.generation.load() != g; });
}

// bf16 rounds each partial sum to bf16, as a reduction in bf16 arithmetic does at every hop.
template <class T>
T plus(T a, T b) {
  return a + b;
}
inline __nv_bfloat16 plus(__nv_bfloat16 a, __nv_bfloat16 b) {
  return __float2bfloat16_rn(__bfloat162float(a) + __bfloat162float(b));
}
template <class T>
void sum_ranks(const ncclComm* c, std::size_t n, void* out) {
  T* o = static_cast<T*>(out);
  for (std::size_t i = 0; i < n; ++i) {
    T acc = reinterpret_cast<const T*>(c->slots)[i];
    for (int r = 1; r < c->nranks; ++r) acc = plus(acc, reinterpret_cast<const T*>(c->slots + std::size_t(r) * kChunk)[i]);
    o[i] = acc;
  }
}
inline void sum_into(const ncclComm* c, int type, std::size_t n, void* out) {
  switch (type) {
    case ncclInt8: return sum_ranks<std::int8_t>(c, n, out);
    case ncclUint8: return sum_ranks<std::uint8_t>(c, n, out);
    case ncclInt32: return sum_ranks<std::int32_t>(c, n, out);
    case ncclUint32: return sum_ranks<std::uint32_t>(c, n, out);
    case ncclInt64: return sum_ranks<std::int64_t>(c, n, out);
    case ncclUint64: return sum_ranks<std::uint64_t>(c, n, out);
    case ncclFloat32: return sum_ranks<float>(c, n, out);
    case ncclFloat64: return sum_ranks<double>(c, n, out);
    case ncclBfloat16: return sum_ranks<__nv_bfloat16>(c, n, out);
  }
}

inline ncclResult_t collective(ncclComm* c, Call call, const void* send, void* recv, const char* name) {
  if (c == nullptr || c->shared == nullptr) return complain(ncclInvalidArgument, nullptr, std::string(name) + " on a null communicator");
  if (c->broken) return complain(ncclInvalidUsage, c, std::string(name) + " after an earlier call failed");
  const std::size_t es = type_size(call.type);
  if (es == 0) return complain(ncclInvalidArgument, c, std::string(name) + ": unknown data type " + std::to_string(call.type));
  if (call.op == Op::all_reduce && call.redop != ncclSum)
    return complain(ncclInvalidArgument, c, std::string(name) + ": only ncclSum is emulated");
  if (call.op == Op::all_reduce && call.type == ncclFloat16)
    return complain(ncclInvalidArgument, c, std::string(name) + ": fp16 sums are not emulated");
  if (call.op == Op::broadcast && (call.root < 0 || call.root >= c->nranks))
    return complain(ncclInvalidArgument, c, std::string(name) + ": root " + std::to_string(call.root) + " is not a rank");
  const std::size_t bytes = call.count * es;
  const bool sends = call.op == Op::all_reduce || c->rank == call.root;
  if (bytes > 0 && sends && !device_range(send, bytes))
    return complain(ncclInvalidArgument, c, std::string(name) + ": the send buffer (" + std::to_string(bytes) +
                                                " bytes) is not inside one device allocation");
  if (bytes > 0 && !device_range(recv, bytes))
    return complain(ncclInvalidArgument, c, std::string(name) + ": the receive buffer (" + std::to_string(bytes) +
                                                " bytes) is not inside one device allocation");

  // The ranks agree on the call before any data moves.
  c->shared->calls[c->rank] = call;
  if (auto r = barrier(c, name); r != ncclSuccess) return r;
  for (int k = 0; k < c->nranks; ++k)
    if (!(c->shared->calls[k] == call)) {
      c->broken = true;
      const Call& o = c->shared->calls[k];
      return complain(ncclInvalidUsage, c,
                      std::string(name) + " of " + std::to_string(call.count) + " elements (type " +
                          std::to_string(call.type) + ", root " + std::to_string(call.root) + ") while rank " +
                          std::to_string(k) + " called " + op_name(o.op) + " of " +
                          std::to_string(o.count) + " elements (type " + std::to_string(o.type) + ", root " +
                          std::to_string(o.root) + ")");
    }
  std::size_t off = 0;
  do {
    const std::size_t n = std::min(kChunk, bytes - off);
    char* mine = c->slots + std::size_t(c->rank) * kChunk;
    if (sends && n) std::memcpy(mine, static_cast<const char*>(send) + off, n);
    if (auto r = barrier(c, name); r != ncclSuccess) return r;
    if (n && call.op == Op::all_reduce) sum_into(c, call.type, n / es, static_cast<char*>(recv) + off);
    if (n && call.op == Op::broadcast) std::memcpy(static_cast<char*>(recv) + off, c->slots + std::size_t(call.root) * kChunk, n);
    if (auto r = barrier(c, name); r != ncclSuccess) return r;  // the slots are free again
    off += n;
  } while (off < bytes);
  return ncclSuccess;
}

inline void unmap(ncclComm* c) {
  if (c->shared) ::munmap(c->shared, c->bytes);
  if (c->fd >= 0) ::close(c->fd);
  c->shared = nullptr, c->fd = -1;
}

}  // namespace emu::nccl

inline const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
  }
  return "unknown result code";
}

// The id names the shared file: $TMPDIR (or /tmp), this process, and a random tag.
inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return ncclInvalidArgument;
  const char* tmp = std::getenv("TMPDIR");
  std::random_device rd;
  const unsigned long long tag = (std::uint64_t(rd()) << 32) ^ rd();
  *id = {};
  const int n = std::snprintf(id->internal, sizeof id->internal, "%s/pgolf-emu-nccl-%d-%016llx",
                              tmp && *tmp ? tmp : "/tmp", int(::getpid()), tag);
  if (n <= 0 || n >= int(sizeof id->internal))
    return emu::nccl::complain(ncclSystemError, nullptr, "TMPDIR is too long for the unique id");
  return ncclSuccess;
}

inline ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
  using namespace emu::nccl;
  if (out == nullptr) return ncclInvalidArgument;
  *out = nullptr;
  if (nranks < 1 || nranks > kMaxRanks || rank < 0 || rank >= nranks)
    return complain(ncclInvalidArgument, nullptr, "ncclCommInitRank: rank " + std::to_string(rank) + " of " +
                                                      std::to_string(nranks) + " (the emulation takes 1 to 8 ranks)");
  if (id.internal[0] != '/' || std::memchr(id.internal, 0, sizeof id.internal) == nullptr)
    return complain(ncclInvalidArgument, nullptr, "ncclCommInitRank: the unique id is not one ncclGetUniqueId made");
  const std::string path(id.internal);
  auto c = new ncclComm;
  c->rank = rank, c->nranks = nranks;
  c->bytes = kHeader + std::size_t(nranks) * kChunk;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s());
  auto fail = [&](ncclResult_t r, const std::string& what) {
    unmap(c);
    if (rank == 0) ::unlink(path.c_str());
    delete c;
    return complain(r, nullptr, "ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(nranks) +
                                    ": " + what);
  };
  if (rank == 0) {
    c->fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (c->fd < 0) return fail(ncclSystemError, "cannot create " + path + ": " + std::strerror(errno));
    if (::ftruncate(c->fd, off_t(c->bytes)) != 0) return fail(ncclSystemError, std::string("ftruncate: ") + std::strerror(errno));
  } else {
    // Rank 0 may not have made the file yet, or not grown it.
    for (;;) {
      c->fd = ::open(path.c_str(), O_RDWR);
      struct stat st{};
      if (c->fd >= 0 && ::fstat(c->fd, &st) == 0 && std::size_t(st.st_size) >= c->bytes) break;
      if (c->fd >= 0) ::close(c->fd), c->fd = -1;
      if (std::chrono::steady_clock::now() > deadline) return fail(ncclSystemError, "rank 0 never set up " + path);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  void* m = ::mmap(nullptr, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
  if (m == MAP_FAILED) return fail(ncclSystemError, std::string("mmap: ") + std::strerror(errno));
  c->slots = static_cast<char*>(m) + kHeader;
  if (rank == 0) {
    c->shared = new (m) Shared{};
    c->shared->nranks = nranks;
    c->shared->ready.store(kReady);
  } else {
    c->shared = static_cast<Shared*>(m);
    while (c->shared->ready.load() != kReady) {
      if (std::chrono::steady_clock::now() > deadline) return fail(ncclSystemError, "rank 0 never set up " + path);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (c->shared->nranks != nranks)
      return fail(ncclInvalidUsage, "rank 0 made a communicator of " + std::to_string(c->shared->nranks) + " ranks");
  }
  c->shared->attached.fetch_add(1);
  if (auto r = wait_for(c, "ncclCommInitRank", [&] { return c->shared->attached.load() == nranks; }); r != ncclSuccess)
    return fail(r, "the communicator never formed");
  if (rank == 0) ::unlink(path.c_str());  // every rank has it mapped
  *out = c;
  return ncclSuccess;
}

inline ncclResult_t ncclCommDestroy(ncclComm_t c) {
  if (c == nullptr) return ncclInvalidArgument;
  emu::nccl::unmap(c);
  delete c;
  return ncclSuccess;
}
// Tells the peers (their waits fail) and lets go.
inline ncclResult_t ncclCommAbort(ncclComm_t c) {
  if (c == nullptr) return ncclInvalidArgument;
  if (c->shared) c->shared->aborted.store(c->rank + 1);
  return ncclCommDestroy(c);
}

inline ncclResult_t ncclAllReduce(const void* send, void* recv, std::size_t count, ncclDataType_t type, ncclRedOp_t op,
                                  ncclComm_t c, cudaStream_t) {
  return emu::nccl::collective(c, {emu::nccl::Op::all_reduce, type, op, -1, count}, send, recv, "ncclAllReduce");
}
inline ncclResult_t ncclBroadcast(const void* send, void* recv, std::size_t count, ncclDataType_t type, int root,
                                  ncclComm_t c, cudaStream_t) {
  return emu::nccl::collective(c, {emu::nccl::Op::broadcast, type, 0, root, count}, send, recv, "ncclBroadcast");
}
