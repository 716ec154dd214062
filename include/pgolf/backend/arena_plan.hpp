// ArenaPlan: the activations a model keeps, planned from its components. Each component's
// implementation lists the tensors it saves (take(pointer, elements)); the plan adds up their sizes,
// the backend allocates one block (host or device) and the plan points every tensor into it.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace pgolf {

struct Shape {
  int batch = 0, seq = 0;
  std::size_t tokens() const { return std::size_t(batch) * std::size_t(seq); }
};

class ArenaPlan {
 public:
  static constexpr std::size_t kAlign = 256;  // covers vector loads and cuBLASLt on the device

  template <class X>
  void take(X*& ptr, std::size_t elements) {
    const std::size_t at = bytes_;
    bytes_ += (elements * sizeof(X) + kAlign - 1) / kAlign * kAlign;
    slots_.push_back([&ptr, at](std::byte* base) { ptr = reinterpret_cast<X*>(base + at); });
  }
  void take_raw(void*& ptr, std::size_t bytes) {
    const std::size_t at = bytes_;
    bytes_ += (bytes + kAlign - 1) / kAlign * kAlign;
    slots_.push_back([&ptr, at](std::byte* base) { ptr = base + at; });
  }
  std::size_t bytes() const { return bytes_; }
  // Points every planned tensor into `base` (bytes() long, kAlign-aligned).
  void assign(std::byte* base) const {
    for (const auto& s : slots_) s(base);
  }

 private:
  std::size_t bytes_ = 0;
  std::vector<std::function<void(std::byte*)>> slots_;
};

}  // namespace pgolf
