// DeviceBuffer<T>: RAII device memory with checked copies to and from the host.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include <cuda_runtime.h>

#include "pgolf/core/cuda_check.hpp"

namespace pgolf::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : n_(n) {
    if (n_ > 0) PGOLF_CUDA_CHECK(cudaMalloc(&p_, n_ * sizeof(T)));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }

  void upload(std::span<const T> host) {
    PGOLF_CHECK(host.size() == n_, "DeviceBuffer::upload: ", host.size(), " elements into a buffer of ", n_);
    PGOLF_CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(std::span<T> host) const {
    PGOLF_CHECK(host.size() == n_, "DeviceBuffer::download: ", n_, " elements into a span of ", host.size());
    PGOLF_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
  }
  // Fills every byte with `byte` (tests poison outputs so unwritten elements show).
  void fill_bytes(int byte) {
    if (n_ > 0) PGOLF_CUDA_CHECK(cudaMemset(p_, byte, n_ * sizeof(T)));
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace pgolf::cuda
