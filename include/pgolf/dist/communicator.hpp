// dist::Communicator: what a data-parallel Trainer needs from the processes it runs with, whatever
// joins them (one process, MPI on the CPU backend, NCCL on the CUDA backend):
//
//   rank(), size()                        this process's place in the job (size 1: single process)
//   all_reduce_sum(span<float|double>)    in place, on host memory; every rank gets the same bits
//   all_reduce_sum_device(float*, n)      in place, on device memory (NCCL; others stage via host)
//   all_reduce_sum_device_bf16(ptr, n)    the same for n bf16 values (a split Muon step's updates)
//   broadcast(bytes, root), barrier()
//   fail(message)                         takes the whole job down, the rank named in the message
//                                         (MPI_Abort / ncclCommAbort + exit): a failing rank never
//                                         leaves the others waiting in a collective
//
// The process has one current communicator, dist::world() (single process unless a launcher
// installed another with dist::ScopedWorld); a Trainer takes it when constructed.
// dist/launch.hpp builds the right one from the environment mpirun or torchrun set.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "pgolf/core/error.hpp"

namespace pgolf::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* kind() const = 0;  // "single", "mpi", "nccl"
  virtual void all_reduce_sum(std::span<float> host) = 0;
  virtual void all_reduce_sum(std::span<double> host) = 0;
  virtual void broadcast(std::span<std::byte> host, int root) = 0;
  virtual void barrier() = 0;
  [[noreturn]] virtual void fail(const std::string& message) = 0;
  // Device (CUDA) memory: true where the communicator reduces device buffers itself (NCCL).
  virtual bool reduces_device_memory() const { return false; }
  virtual void all_reduce_sum_device(float* /*device*/, std::size_t /*n*/) {
    fail(std::string(kind()) + " communicator cannot reduce device memory; stage it through the host");
  }
  virtual void all_reduce_sum_device_bf16(void* /*device*/, std::size_t /*n*/) {
    fail(std::string(kind()) + " communicator cannot reduce device memory; stage it through the host");
  }

  bool is_root() const { return rank() == 0; }
  // Rank 0's value of v on every rank (a trivially copyable value).
  template <class T>
  T broadcast_value(T v, int root = 0) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (size() > 1) broadcast(std::as_writable_bytes(std::span<T>(&v, 1)), root);
    return v;
  }
  std::string broadcast_string(std::string s, int root = 0) {
    if (size() == 1) return s;
    s.resize(broadcast_value(s.size(), root));
    broadcast(std::as_writable_bytes(std::span<char>(s.data(), s.size())), root);
    return s;
  }
  double sum(double v) {
    if (size() > 1) all_reduce_sum(std::span<double>(&v, 1));
    return v;
  }
  // "rank 1/3: message": what fail() reports.
  std::string tagged(const std::string& message) const {
    return "rank " + std::to_string(rank()) + "/" + std::to_string(size()) + ": " + message;
  }
};

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* kind() const override { return "single"; }
  void all_reduce_sum(std::span<float>) override {}
  void all_reduce_sum(std::span<double>) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void barrier() override {}
  [[noreturn]] void fail(const std::string& message) override {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::exit(1);
  }
};

namespace detail {
inline std::unique_ptr<Communicator>& world_slot() {
  static std::unique_ptr<Communicator> slot;
  return slot;
}
}  // namespace detail

// The process's current communicator (single process by default).
inline Communicator& world() {
  auto& slot = detail::world_slot();
  if (!slot) slot = std::make_unique<SingleProcess>();
  return *slot;
}

// Installs a communicator as world() for its lifetime and restores the previous one after (an MPI
// communicator finalises MPI when destroyed). Declare it outside the try block whose handler calls
// fail(), so the communicator still exists when an exception reaches the handler.
class ScopedWorld {
 public:
  ScopedWorld() = default;
  explicit ScopedWorld(std::unique_ptr<Communicator> c) { install(std::move(c)); }
  ScopedWorld(const ScopedWorld&) = delete;
  ScopedWorld& operator=(const ScopedWorld&) = delete;
  ~ScopedWorld() {
    if (installed_) {
      auto mine = std::move(detail::world_slot());
      detail::world_slot() = std::move(previous_);
    }
  }
  void install(std::unique_ptr<Communicator> c) {
    PGOLF_CHECK(!installed_, "ScopedWorld::install: already holds a communicator");
    previous_ = std::move(detail::world_slot());
    detail::world_slot() = std::move(c);
    installed_ = true;
  }
  bool distributed() const { return installed_ && world().size() > 1; }

 private:
  std::unique_ptr<Communicator> previous_;
  bool installed_ = false;
};

// The launcher's view of this process, from its environment: mpirun (OMPI_COMM_WORLD_*), a PMI
// launcher (PMI_RANK/PMI_SIZE: MPICH, srun), or torchrun (RANK/WORLD_SIZE/LOCAL_RANK).
struct LaunchEnv {
  int rank = 0, size = 1, local_rank = 0;
  const char* launcher = "none";  // "mpirun", "pmi", "torchrun", "none"
  const char* size_variable = "";
  bool mpi() const { return std::strcmp(launcher, "mpirun") == 0 || std::strcmp(launcher, "pmi") == 0; }
};

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == 0) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  PGOLF_CHECK(end != v && *end == 0 && x >= 0 && x < (1L << 30), "environment variable ", name, "='", v,
              "' is not a non-negative integer");
  return int(x);
}

inline LaunchEnv launch_env() {
  LaunchEnv e;
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
    e = {env_int("OMPI_COMM_WORLD_RANK", 0), env_int("OMPI_COMM_WORLD_SIZE", 1),
         env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0), "mpirun", "OMPI_COMM_WORLD_SIZE"};
  } else if (std::getenv("PMI_SIZE")) {
    e = {env_int("PMI_RANK", 0), env_int("PMI_SIZE", 1), env_int("MPI_LOCALRANKID", env_int("SLURM_LOCALID", 0)), "pmi",
         "PMI_SIZE"};
  } else if (std::getenv("WORLD_SIZE")) {
    e = {env_int("RANK", 0), env_int("WORLD_SIZE", 1), env_int("LOCAL_RANK", 0), "torchrun", "WORLD_SIZE"};
  }
  PGOLF_CHECK(e.size >= 1 && e.rank < e.size, "launcher environment: rank ", e.rank, " is not in [0, ", e.size,
              ") (", e.size_variable, ")");
  return e;
}

}  // namespace pgolf::dist
