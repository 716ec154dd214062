// dist::NcclCommunicator: data parallelism for the CUDA backend. One process per GPU; the GPU is
// LOCAL_RANK's (OMPI_COMM_WORLD_LOCAL_RANK under mpirun). Gradients (fp32) and a split Muon step's
// updates (bf16) are reduced in place on the device (ncclAllReduce, sum); host values (losses,
// evaluation sums, the clock) go through a small device scratch buffer. NCCL's ring all-reduce forms
// each element's sum once and then copies it, so every rank holds the same bits.
//
// The ncclUniqueId travels from rank 0 to the others
//   - by MPI broadcast when launched by mpirun and the binary has MPI (PGOLF_HAVE_MPI), or
//   - over a TCP rendezvous otherwise (torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK,
//     MASTER_ADDR, MASTER_PORT): rank 0 listens on PGOLF_RENDEZVOUS_PORT (default MASTER_PORT + 1,
//     as torchrun's own store holds MASTER_PORT) and sends the id to each rank that connects.
//
// fail() prints the message with the rank, then MPI_Abort (under mpirun) or ncclCommAbort and exit
// 1 (torchrun ends the other workers when one exits non-zero).
//
// Compiled only by nvcc with NCCL found (PGOLF_HAVE_NCCL).
#pragma once

#ifndef __CUDACC__
#error "pgolf/dist/nccl.cuh is CUDA code: compile it with nvcc"
#endif

#include <arpa/inet.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "pgolf/core/cuda_check.hpp"
#include "pgolf/dist/communicator.hpp"
#ifdef PGOLF_HAVE_MPI
#include "pgolf/dist/mpi.hpp"
#endif

namespace pgolf::dist {

namespace detail {

// Sends/receives exactly n bytes; false on a closed or failed socket.
inline bool send_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    c += k, n -= std::size_t(k);
  }
  return true;
}
inline bool recv_all(int fd, void* p, std::size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = ::recv(fd, c, n, 0);
    if (k <= 0) return false;
    c += k, n -= std::size_t(k);
  }
  return true;
}

// Rank 0 serves `bytes` to size-1 peers on port; the others fetch them from addr:port, retrying
// while rank 0 starts (up to timeout_s).
inline void tcp_rendezvous(int rank, int size, const std::string& addr, int port, void* bytes, std::size_t n,
                           int timeout_s) {
  if (rank == 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    PGOLF_CHECK(fd >= 0, "rendezvous: socket() failed: ", std::strerror(errno));
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(std::uint16_t(port));
    PGOLF_CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "rendezvous: cannot listen on port ", port,
                ": ", std::strerror(errno), " (set PGOLF_RENDEZVOUS_PORT to a free port)");
    PGOLF_CHECK(::listen(fd, size) == 0, "rendezvous: listen() failed: ", std::strerror(errno));
    for (int k = 1; k < size; ++k) {
      const int c = ::accept(fd, nullptr, nullptr);
      PGOLF_CHECK(c >= 0, "rendezvous: accept() failed: ", std::strerror(errno));
      const bool ok = send_all(c, bytes, n);
      ::close(c);
      PGOLF_CHECK(ok, "rendezvous: sending the NCCL id to a peer failed");
    }
    ::close(fd);
    return;
  }
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port_s = std::to_string(port);
  PGOLF_CHECK(::getaddrinfo(addr.c_str(), port_s.c_str(), &hints, &res) == 0 && res != nullptr,
              "rendezvous: cannot resolve MASTER_ADDR '", addr, "'");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
      const bool ok = recv_all(fd, bytes, n);
      ::close(fd);
      ::freeaddrinfo(res);
      PGOLF_CHECK(ok, "rendezvous: the connection to ", addr, ":", port, " closed before the NCCL id arrived");
      return;
    }
    if (fd >= 0) ::close(fd);
    if (std::chrono::steady_clock::now() > deadline) {
      ::freeaddrinfo(res);
      PGOLF_FAIL("rendezvous: rank 0 at ", addr, ":", port, " did not answer within ", timeout_s, " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace detail

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const LaunchEnv& env) : rank_(env.rank), size_(env.size), local_(env.local_rank) {
    const int devices = cuda::device_count();
    PGOLF_CHECK(devices > 0, tagged("the NCCL communicator needs a CUDA device; none found"));
    PGOLF_CHECK(local_ < devices, tagged("local rank " + std::to_string(local_) + " but this node has " +
                                         std::to_string(devices) + " CUDA devices (one process per GPU)"));
    PGOLF_CUDA_CHECK(cudaSetDevice(local_));
    ncclUniqueId id{};
    if (rank_ == 0) nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
#ifdef PGOLF_HAVE_MPI
    if (env.mpi()) {
      mpi_ = std::make_unique<MpiCommunicator>();
      PGOLF_CHECK(mpi_->size() == size_, "MPI reports ", mpi_->size(), " ranks, the launcher's environment ", size_);
      mpi_->broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0);
    } else
#endif
    {
      PGOLF_CHECK(!env.mpi(), "launched by an MPI launcher, but this binary has no MPI to exchange the NCCL id; "
                              "launch it torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)");
      const char* addr = std::getenv("MASTER_ADDR");
      PGOLF_CHECK(addr != nullptr && *addr, tagged("MASTER_ADDR is not set (rank 0's host, for the NCCL rendezvous)"));
      const int master_port = env_int("MASTER_PORT", -1);
      PGOLF_CHECK(master_port > 0 || std::getenv("PGOLF_RENDEZVOUS_PORT"),
                  tagged("MASTER_PORT (or PGOLF_RENDEZVOUS_PORT) is not set"));
      const int port = env_int("PGOLF_RENDEZVOUS_PORT", master_port + 1);
      detail::tcp_rendezvous(rank_, size_, addr, port, &id, sizeof id, env_int("PGOLF_RENDEZVOUS_TIMEOUT", 300));
    }
    nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    PGOLF_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() override {
    if (scratch_) cudaFree(scratch_);
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "nccl"; }
  int device() const { return local_; }

  void all_reduce_sum(std::span<float> x) override { host_reduce(x.data(), x.size_bytes(), x.size(), ncclFloat32); }
  void all_reduce_sum(std::span<double> x) override { host_reduce(x.data(), x.size_bytes(), x.size(), ncclFloat64); }
  void broadcast(std::span<std::byte> x, int root) override {
    if (x.empty()) return;
    void* d = scratch(x.size());
    PGOLF_CUDA_CHECK(cudaMemcpyAsync(d, x.data(), x.size(), cudaMemcpyHostToDevice, stream_));
    nccl(ncclBroadcast(d, d, x.size(), ncclUint8, root, comm_, stream_), "ncclBroadcast");
    PGOLF_CUDA_CHECK(cudaMemcpyAsync(x.data(), d, x.size(), cudaMemcpyDeviceToHost, stream_));
    PGOLF_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void barrier() override {
    float one = 1;
    all_reduce_sum(std::span<float>(&one, 1));
  }
  bool reduces_device_memory() const override { return true; }
  void all_reduce_sum_device(float* d, std::size_t n) override { device_reduce(d, n, ncclFloat32); }
  void all_reduce_sum_device_bf16(void* d, std::size_t n) override { device_reduce(d, n, ncclBfloat16); }
  [[noreturn]] void fail(const std::string& message) override {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", tagged(message).c_str());
    std::fflush(stderr);
#ifdef PGOLF_HAVE_MPI
    if (mpi_) mpi_->fail(message);  // MPI_Abort: mpirun ends every rank
#endif
    if (comm_) ncclCommAbort(comm_);
    std::_Exit(1);
  }

 private:
  void nccl(ncclResult_t r, const char* call) {
    if (r != ncclSuccess) PGOLF_FAIL(tagged(std::string(call) + " failed: " + ncclGetErrorString(r)));
  }
  void* scratch(std::size_t bytes) {
    if (bytes > scratch_bytes_) {
      if (scratch_) PGOLF_CUDA_CHECK(cudaFree(scratch_));
      scratch_ = nullptr;
      PGOLF_CUDA_CHECK(cudaMalloc(&scratch_, bytes));
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }
  void device_reduce(void* d, std::size_t n, ncclDataType_t type) {
    if (n == 0) return;
    PGOLF_CUDA_CHECK(cudaDeviceSynchronize());  // the kernels that wrote d, on whatever stream they ran
    nccl(ncclAllReduce(d, d, n, type, ncclSum, comm_, stream_), "ncclAllReduce");
    PGOLF_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void host_reduce(void* h, std::size_t bytes, std::size_t n, ncclDataType_t type) {
    if (n == 0 || size_ == 1) return;
    void* d = scratch(bytes);
    PGOLF_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_));
    nccl(ncclAllReduce(d, d, n, type, ncclSum, comm_, stream_), "ncclAllReduce");
    PGOLF_CUDA_CHECK(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, stream_));
    PGOLF_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  int rank_, size_, local_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
#ifdef PGOLF_HAVE_MPI
  std::unique_ptr<MpiCommunicator> mpi_;
#endif
};

}  // namespace pgolf::dist
