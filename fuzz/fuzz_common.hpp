// Shared pieces of the libFuzzer targets and of the seed-corpus generator (make_corpus.cpp): the
// small parameter table the artifact and checkpoint targets decode against, the CRC fix-up that lets
// mutated inputs get past the checksums, and a per-process scratch file for path-taking parsers.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/export/compress.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf::fuzz {

// One tensor per export policy, small enough that every payload stays a few hundred bytes.
inline constexpr std::array<ParamInfo, 4> kTable{
    ParamInfo{.name = "rows", .offset = 0, .rows = 4, .cols = 8, .rank = 2, .export_policy = ExportPolicy::int8_per_row},
    ParamInfo{.name = "tensor", .offset = 32, .rows = 16, .cols = 1, .rank = 1,
              .export_policy = ExportPolicy::int8_per_tensor},
    ParamInfo{.name = "half", .offset = 48, .rows = 8, .cols = 1, .rank = 1, .export_policy = ExportPolicy::float16},
    ParamInfo{.name = "control", .offset = 56, .rows = 4, .cols = 1, .rank = 1,
              .export_policy = ExportPolicy::float32_control},
};
inline constexpr std::size_t kTableSize = table_size(kTable);
inline constexpr std::uint64_t kFingerprint = table_fingerprint(kTable);

inline void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int b = 0; b < 4; ++b) p[b] = std::uint8_t(v >> (8 * b));
}

// The first input byte is a flag byte: bit 0 set means "recompute the checksums" so the fuzzer
// can mutate the fields behind them; clear means the bytes are decoded exactly as given.
inline bool fix_checksums(std::uint8_t flags) { return (flags & 1) != 0; }

// Artifact: header CRC at 48 over bytes 0..47, payload CRC at 40 over bytes 52.. (see artifact.hpp).
inline void fix_artifact_crcs(std::vector<std::uint8_t>& a) {
  if (a.size() < 52) return;
  put_u32(a.data() + 40, crc32_of(std::span<const std::uint8_t>(a).subspan(52)));
  put_u32(a.data() + 48, crc32_of(std::span<const std::uint8_t>(a).first(48)));
}

// Checkpoint: a trailing CRC-32 over everything before it (see checkpoint.hpp).
inline void fix_checkpoint_crc(std::vector<std::uint8_t>& c) {
  if (c.size() < 12) return;
  const std::size_t body = c.size() - 4;
  put_u32(c.data() + body, crc32_of(std::span<const std::uint8_t>(c).first(body)));
}

// An in-memory file (memfd) reachable by path, rewritten for every input: parsers that take a path
// read the fuzz input without touching the disk.
class ScratchFile {
 public:
  explicit ScratchFile(const char* name) : fd_(::memfd_create(name, 0)) {
    if (fd_ < 0) __builtin_trap();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0) __builtin_trap();
    for (std::size_t at = 0; at < size;) {
      const ssize_t n = ::pwrite(fd_, data + at, size - at, off_t(at));
      if (n <= 0) __builtin_trap();
      at += std::size_t(n);
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

}  // namespace pgolf::fuzz
