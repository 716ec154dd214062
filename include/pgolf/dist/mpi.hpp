// dist::MpiCommunicator: data parallelism over MPI (the CPU backend; and the NCCL communicator's
// rendezvous under mpirun). Built where CMake found MPI (PGOLF_HAVE_MPI).
//
// All-reduce is a reduce to rank 0 followed by a broadcast rather than MPI_Allreduce: MPI does not
// promise that every rank of an all-reduce gets the same bits (recursive-halving schemes add in
// rank-dependent orders), and ranks whose gradients differ in the last bit would drift apart. With
// reduce + broadcast the sum is formed once, in an order fixed by the number of ranks and the
// message size, so every rank holds the same weights after every step, and reruns with the same
// number of ranks repeat bit for bit.
#pragma once

#ifndef PGOLF_HAVE_MPI
#error "pgolf/dist/mpi.hpp needs MPI (configure with MPI found, which defines PGOLF_HAVE_MPI)"
#endif

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <string>

#include "pgolf/dist/communicator.hpp"

namespace pgolf::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Initialises MPI unless the caller already has (then it also leaves finalising to the caller).
  MpiCommunicator() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "mpi"; }

  void all_reduce_sum(std::span<float> x) override { reduce_bcast(x.data(), x.size(), MPI_FLOAT, sizeof(float)); }
  void all_reduce_sum(std::span<double> x) override { reduce_bcast(x.data(), x.size(), MPI_DOUBLE, sizeof(double)); }
  void broadcast(std::span<std::byte> x, int root) override {
    for (std::size_t at = 0; at < x.size(); at += kChunk)
      check(MPI_Bcast(x.data() + at, int(std::min(kChunk, x.size() - at)), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  [[noreturn]] void fail(const std::string& message) override {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", tagged(message).c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);  // MPI_Abort does not return; should it, this rank still ends
  }

 private:
  static constexpr std::size_t kChunk = std::size_t(1) << 30;  // elements per call: MPI counts are int

  void reduce_bcast(void* data, std::size_t n, MPI_Datatype type, std::size_t bytes) {
    if (size_ == 1) return;
    auto* p = static_cast<char*>(data);
    for (std::size_t at = 0; at < n; at += kChunk) {
      const int count = int(std::min(kChunk, n - at));
      void* chunk = p + at * bytes;
      check(MPI_Reduce(rank_ == 0 ? MPI_IN_PLACE : chunk, rank_ == 0 ? chunk : nullptr, count, type, MPI_SUM, 0,
                       MPI_COMM_WORLD),
            "MPI_Reduce");
      check(MPI_Bcast(chunk, count, type, 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  void check(int rc, const char* call) {
    if (rc != MPI_SUCCESS) fail(std::string(call) + " failed with MPI error " + std::to_string(rc));
  }

  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};

}  // namespace pgolf::dist
