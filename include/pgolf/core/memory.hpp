// How much memory this machine has, so a model whose activations cannot fit stops with a clear
// error before it allocates (instead of std::bad_alloc, or the kernel's OOM killer mid-run).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <unistd.h>

#include "pgolf/core/error.hpp"
#include "pgolf/core/format.hpp"

namespace pgolf {

// Physical memory of the host in bytes; 0 when the system does not say.
inline std::uint64_t host_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page) : 0;
}

inline std::string gib(std::uint64_t bytes) { return format("%.2f GiB", double(bytes) / double(1ULL << 30)); }

// what: the allocation, named for the user ("activations of a 32 x 1024 micro-batch").
inline void check_fits(std::uint64_t bytes, std::uint64_t available, const std::string& what, const char* where) {
  PGOLF_CHECK(available == 0 || bytes <= available, what, " need ", gib(bytes), " but ", where, " has ", gib(available),
              ": lower --micro-batch-tokens or --train-seq-len");
}

}  // namespace pgolf
