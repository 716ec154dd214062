// NcclCommunicator on the GPUs this job is given: all-reduce of device floats (what the Trainer's
// gradients take: TrainerBackend<Cuda>::all_reduce_grads, in place and staged via the host as with a
// host communicator) and of host doubles, broadcast, barrier.
//
//   test_nccl                                 a world of one, its id over the TCP rendezvous on
//                                             127.0.0.1 (the torchrun-style path)
//   mpirun -np N test_nccl                    N ranks, one GPU each, the id over MPI
//   RANK=r WORLD_SIZE=N LOCAL_RANK=r MASTER_ADDR=.. MASTER_PORT=.. test_nccl   torchrun-style
//
// And Muon split by matrix over the ranks (CudaMuon with a MuonShard, its updates all-reduced in
// bf16, as the Trainer's --muon-shard runs it) against Muon whole on each rank: every rank's weights
// the same bits as rank 0's, and the whole step's within bf16 rounding (`--bitwise`: the same bits;
// the emulation's products give each matrix the same bits whatever the batch, cuBLASLt may pick
// another algorithm for another batch).
//
// Without a CUDA device it prints why and exits 77 (CTest: skipped). Built where nvcc and NCCL are.
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "pgolf/core/cuda_check.hpp"
#include "pgolf/dist/nccl.cuh"
#include "pgolf/train/backend_policy.hpp"

using namespace pgolf;

namespace {
// What TrainerBackend<Cuda>::all_reduce_grads needs from a model.
struct DeviceGrads {
  float* d = nullptr;
  std::size_t n = 0;
  cuda::DeviceParamSpan grads() const { return {d, n}; }
};

// Five matrices of four shapes (two alike: a batch of two; tall ones: transposed) and a vector Muon
// leaves alone. On 3 ranks some rank owns no matrix of a shape.
constexpr std::array<ParamInfo, 6> kMuonTable = [] {
  std::array<ParamInfo, 6> t{};
  const int shape[6][2] = {{48, 32}, {48, 32}, {32, 64}, {96, 24}, {1, 1}, {16, 40}};
  std::size_t at = 0;
  for (std::size_t k = 0; k < t.size(); ++k) {
    t[k].name = k == 4 ? "gain" : "w";
    t[k].offset = at;
    t[k].rows = shape[k][0], t[k].cols = shape[k][1];
    t[k].rank = k == 4 ? 1 : 2;
    t[k].group = k == 4 ? OptimGroup::adam_scalar : OptimGroup::muon_matrix;
    at += t[k].numel();
  }
  return t;
}();

// The same ranks seen as a host communicator (reduces_device_memory() false): the Trainer's device
// all-reduces then go through host copies, as with a CUDA model under an MPI communicator.
class HostStaged final : public dist::Communicator {
 public:
  explicit HostStaged(dist::Communicator& c) : c_(c) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  const char* kind() const override { return "host-staged"; }
  void all_reduce_sum(std::span<float> x) override { c_.all_reduce_sum(x); }
  void all_reduce_sum(std::span<double> x) override { c_.all_reduce_sum(x); }
  void broadcast(std::span<std::byte> x, int root) override { c_.broadcast(x, root); }
  void barrier() override { c_.barrier(); }
  [[noreturn]] void fail(const std::string& message) override {
    c_.fail(message);
    std::abort();  // not reached; the compiler does not take [[noreturn]] through a virtual call
  }

 private:
  dist::Communicator& c_;
};

float pseudo_random(std::size_t i, int salt) {  // the same on every rank
  std::uint32_t x = std::uint32_t(i * 2654435761u) ^ std::uint32_t(salt * 40503u + 17u);
  x ^= x >> 15, x *= 0x2c1b3c6dU, x ^= x >> 12;
  return float(x % 20001u) / 10000.f - 1.f;
}

// Returns the number of failed checks on this rank; `comm` carries the split step's all-reduce.
int check_muon_shard(dist::Communicator& comm, bool bitwise) {
  const int W = comm.size(), r = comm.rank();
  const std::size_t n = table_size(kMuonTable);
  std::vector<float> w0(n), g(n);
  for (std::size_t i = 0; i < n; ++i) w0[i] = 0.1f * pseudo_random(i, 1);
  cuda::DeviceBuffer<float> whole_w(n), split_w(n), grads(n);
  whole_w.upload(w0);
  split_w.upload(w0);
  cuda::Gemm gemm;
  const MuonOptions opt{.weight_decay = 0.1, .row_normalize = true};
  cuda::CudaMuon whole(kMuonTable, opt, gemm), split(kMuonTable, opt, gemm);
  const cuda::CudaMuon::Shard shard{r, W, [&](std::span<ops::cuda::bf16> x) { TrainerBackend<Cuda>::all_reduce(x, comm); }};
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < n; ++i) g[i] = pseudo_random(i, 2 + step);
    grads.upload(g);
    whole.step(whole_w.data(), grads.data(), 0.05);
    split.step(split_w.data(), grads.data(), 0.05, shard);
  }
  PGOLF_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> a(n), b(n);
  whole_w.download(a);
  split_w.download(b);
  int failed = 0;
  std::vector<float> root = b;
  comm.broadcast(std::as_writable_bytes(std::span<float>(root)), 0);
  if (std::memcmp(root.data(), b.data(), n * sizeof(float)) != 0) {
    std::printf("FAIL rank %d: split Muon's weights differ from rank 0's\n", r);
    ++failed;
  }
  for (std::size_t k = 0; k < kMuonTable.size(); ++k) {
    const ParamInfo& p = kMuonTable[k];
    double diff = 0, change = 0;
    bool same = true;
    for (std::size_t i = p.offset; i < p.offset + p.numel(); ++i) {
      diff += (double(b[i]) - a[i]) * (double(b[i]) - a[i]);
      change += (double(a[i]) - w0[i]) * (double(a[i]) - w0[i]);
      same = same && std::memcmp(&a[i], &b[i], sizeof(float)) == 0;
    }
    const bool moved = p.group == OptimGroup::muon_matrix;
    if ((moved && change == 0) || (!moved && change != 0) || (bitwise && !same) ||
        (moved && std::sqrt(diff) > 1e-2 * std::sqrt(change))) {
      std::printf("FAIL rank %d: matrix %zu (%dx%d): split against whole |diff| %.3g, |change| %.3g%s\n", r, k,
                  p.rows, p.cols, std::sqrt(diff), std::sqrt(change), same ? "" : ", not bit for bit");
      ++failed;
    }
  }
  if (r == 0)
    std::printf("split Muon on %d rank(s), updates over %s: this rank orthogonalises %d of 5 matrices; weights "
                "equal on every rank\n", W, comm.kind(), split.owned(r, W));
  return failed;
}
}  // namespace

int main(int argc, char** argv) {
  const bool bitwise = argc > 1 && std::string_view(argv[1]) == "--bitwise";
  if (cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  dist::LaunchEnv env = dist::launch_env();
  if (env.size == 1 && std::getenv("MASTER_ADDR") == nullptr) {
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);
    ::setenv("PGOLF_RENDEZVOUS_PORT", "29533", 0);
  }
  dist::ScopedWorld world;
  try {
    world.install(std::make_unique<dist::NcclCommunicator>(env));
    auto& comm = dist::world();
    const int W = comm.size(), r = comm.rank();
    int failed = 0;

    // Device floats through the Trainer's path (in place, and staged via the host): element i on
    // rank r is r + 1 + i; the sum over ranks is W(W+1)/2 + W i, exact in float for these sizes.
    HostStaged staged(comm);
    for (dist::Communicator* c : std::array<dist::Communicator*, 2>{&comm, &staged}) {
      const std::size_t n = 1 << 20;
      std::vector<float> h(n);
      for (std::size_t i = 0; i < n; ++i) h[i] = float(r + 1) + float(i % 1000);
      DeviceGrads g{nullptr, n};
      PGOLF_CUDA_CHECK(cudaMalloc(&g.d, n * sizeof(float)));
      PGOLF_CUDA_CHECK(cudaMemcpy(g.d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
      TrainerBackend<Cuda>::all_reduce_grads(g, *c);
      PGOLF_CUDA_CHECK(cudaMemcpy(h.data(), g.d, n * sizeof(float), cudaMemcpyDeviceToHost));
      for (std::size_t i = 0; i < n; ++i)
        if (h[i] != float(W * (W + 1) / 2) + float(W) * float(i % 1000)) {
          std::printf("FAIL rank %d: device all-reduce (%s) element %zu is %g\n", r, c->kind(), i, double(h[i]));
          ++failed;
          break;
        }
      PGOLF_CUDA_CHECK(cudaFree(g.d));
    }

    double v[2] = {double(r), 1.0};  // host doubles: sum of ranks, count of ranks
    comm.all_reduce_sum(std::span<double>(v));
    if (v[0] != W * (W - 1) / 2.0 || v[1] != W) {
      std::printf("FAIL rank %d: host all-reduce gave %g %g\n", r, v[0], v[1]);
      ++failed;
    }
    const double b = comm.broadcast_value(r == 0 ? 42.5 : -1.0);
    if (b != 42.5) {
      std::printf("FAIL rank %d: broadcast gave %g\n", r, b);
      ++failed;
    }
    failed += check_muon_shard(comm, bitwise);
    failed += check_muon_shard(staged, bitwise);
    comm.barrier();
    failed = int(comm.sum(double(failed)));
    if (r == 0) std::printf("%s: NCCL communicator on %d rank(s)\n", failed ? "FAILED" : "PASSED", W);
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    if (world.distributed()) dist::world().fail(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
