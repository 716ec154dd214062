// The NCCL emulation's own checks (emulate_nccl.hpp), each with two forked ranks: a sum and a
// broadcast are right, and what real NCCL would hang on or corrupt memory with is an error on
// every rank instead: ranks calling different collectives, a host buffer, a peer that aborted, a
// peer that never calls (after PGOLF_EMU_NCCL_TIMEOUT).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "emulate_runtime.hpp"
#include "emulate_nccl.hpp"

namespace {

int failures = 0;
void expect(bool ok, const char* what, int rank) {
  if (!ok) {
    std::printf("FAIL rank %d: %s\n", rank, what);
    ++failures;
  }
}

// Runs body(rank, comm) on two ranks (this process and a fork); true when both bodies passed.
bool two_ranks(const char* name, const std::function<void(int, ncclComm_t)>& body) {
  ncclUniqueId id;
  if (ncclGetUniqueId(&id) != ncclSuccess) return false;
  std::fflush(stdout);
  const pid_t child = ::fork();
  const int rank = child == 0 ? 1 : 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRank(&comm, 2, id, rank);
  expect(r == ncclSuccess, "ncclCommInitRank", rank);
  if (r == ncclSuccess) body(rank, comm);
  if (comm) ncclCommDestroy(comm);
  if (child == 0) std::_Exit(failures ? 1 : 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  const bool ok = failures == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name);
  return ok;
}

float* device_floats(std::size_t n) {
  void* p = nullptr;
  cudaMalloc(&p, n * sizeof(float));
  return static_cast<float*>(p);
}

}  // namespace

int main() {
  ::setenv("PGOLF_EMU_NCCL_TIMEOUT", "2", 1);
  bool all = true;
  // More than one chunk of the shared file per rank: 1M + 3 floats.
  all &= two_ranks("all-reduce and broadcast", [](int rank, ncclComm_t c) {
    const std::size_t n = (std::size_t(1) << 20) + 3;
    float* d = device_floats(n);
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = float(rank + 1) * float(i % 7);
    cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    expect(ncclAllReduce(d, d, n, ncclFloat32, ncclSum, c, nullptr) == ncclSuccess, "ncclAllReduce", rank);
    cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
    bool right = true;
    for (std::size_t i = 0; i < n; ++i) right &= h[i] == 3.0f * float(i % 7);
    expect(right, "the sum", rank);
    float v = rank == 1 ? 42.0f : 0.0f;
    cudaMemcpy(d, &v, sizeof v, cudaMemcpyHostToDevice);
    expect(ncclBroadcast(d, d, 1, ncclFloat32, 1, c, nullptr) == ncclSuccess, "ncclBroadcast", rank);
    cudaMemcpy(&v, d, sizeof v, cudaMemcpyDeviceToHost);
    expect(v == 42.0f, "the broadcast value", rank);
    cudaFree(d);
  });
  // bf16 (a split Muon step's updates): a partial sum is rounded to bf16; x + 0 stays x.
  all &= two_ranks("bf16 all-reduce", [](int rank, ncclComm_t c) {
    const float mine[2][4] = {{1.0f, 1.0f, 0.3359375f, 0.0f}, {0.001953125f, 0.01171875f, 0.0f, -2.5f}};
    const float want[4] = {1.0f, 1.015625f, 0.3359375f, -2.5f};  // 1 + 1/4 ulp; 1 + 3/2 ulp, to even
    __nv_bfloat16 h[4];
    for (int i = 0; i < 4; ++i) h[i] = __float2bfloat16_rn(mine[rank][i]);
    void* d = nullptr;
    cudaMalloc(&d, sizeof h);
    cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice);
    expect(ncclAllReduce(d, d, 4, ncclBfloat16, ncclSum, c, nullptr) == ncclSuccess, "ncclAllReduce bf16", rank);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    bool right = true;
    for (int i = 0; i < 4; ++i) right &= __bfloat162float(h[i]) == want[i];
    expect(right, "the bf16 sum", rank);
    cudaFree(d);
  });
  all &= two_ranks("different counts: an error on both ranks", [](int rank, ncclComm_t c) {
    float* d = device_floats(8);
    expect(ncclAllReduce(d, d, rank == 0 ? 8 : 7, ncclFloat32, ncclSum, c, nullptr) == ncclInvalidUsage,
           "a count mismatch is ncclInvalidUsage", rank);
    cudaFree(d);
  });
  all &= two_ranks("a host buffer: refused before any rank waits", [](int rank, ncclComm_t c) {
    float h[4] = {};
    float* d = device_floats(4);
    float* buffer = rank == 0 ? h : d;
    const ncclResult_t r = ncclAllReduce(buffer, buffer, 4, ncclFloat32, ncclSum, c, nullptr);
    // Rank 0 is refused at once; rank 1 then waits for it in vain.
    expect(r == (rank == 0 ? ncclInvalidArgument : ncclSystemError), "the host buffer's result", rank);
    cudaFree(d);
  });
  all &= two_ranks("a peer that aborts", [](int rank, ncclComm_t c) {
    float* d = device_floats(4);
    if (rank == 1) {
      ncclCommAbort(c);
      std::_Exit(0);
    }
    expect(ncclAllReduce(d, d, 4, ncclFloat32, ncclSum, c, nullptr) == ncclRemoteError, "ncclRemoteError", rank);
    cudaFree(d);
  });
  std::printf("%s\n", all ? "PASSED: the NCCL emulation's checks" : "FAILED");
  return all ? 0 : 1;
}
