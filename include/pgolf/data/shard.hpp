// Token shards in the challenge's format: 256 little-endian int32 header words [20240520, 1, n, 0...]
// followed by n little-endian uint16 token ids; the file is exactly 1024 + 2n bytes. Reading maps
// the file; every violation is a pgolf::Error naming the file and the problem.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>

#include "pgolf/core/error.hpp"

namespace pgolf::data {

inline constexpr std::int32_t kShardMagic = 20240520;
inline constexpr std::int32_t kShardVersion = 1;
inline constexpr std::size_t kShardHeaderWords = 256;
inline constexpr std::size_t kShardHeaderBytes = kShardHeaderWords * 4;

// A read-only memory map of one validated shard.
class Shard {
 public:
  Shard() = default;
  explicit Shard(const std::filesystem::path& path) : path_(path) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY);
    PGOLF_CHECK(fd >= 0, "shard ", name, ": cannot open (", std::strerror(errno), ")");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      PGOLF_FAIL("shard ", name, ": cannot stat (", std::strerror(errno), ")");
    }
    size_ = std::size_t(st.st_size);
    if (size_ < kShardHeaderBytes) {
      ::close(fd);
      PGOLF_FAIL("shard ", name, ": truncated header (", size_, " bytes, the header alone is ", kShardHeaderBytes, ")");
    }
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    PGOLF_CHECK(p != MAP_FAILED, "shard ", name, ": mmap failed (", std::strerror(errno), ")");
    map_ = static_cast<const unsigned char*>(p);
    const std::int32_t magic = word(0), version = word(1), n = word(2);
    if (magic != kShardMagic) {
      unmap();
      PGOLF_FAIL("shard ", name, ": bad magic ", magic, " (expected ", kShardMagic, "); not a token shard");
    }
    if (version != kShardVersion) {
      unmap();
      PGOLF_FAIL("shard ", name, ": unsupported version ", version, " (expected ", kShardVersion, ")");
    }
    if (n < 0 || size_ != kShardHeaderBytes + 2 * std::size_t(n)) {
      const std::size_t expected = kShardHeaderBytes + 2 * std::size_t(n < 0 ? 0 : n);
      unmap();
      PGOLF_FAIL("shard ", name, ": size mismatch: header says ", n, " tokens (", expected,
                 " bytes) but the file has ", size_, " bytes (truncated or corrupt)");
    }
    count_ = std::size_t(n);
  }
  Shard(Shard&& o) noexcept { *this = std::move(o); }
  Shard& operator=(Shard&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      map_ = std::exchange(o.map_, nullptr);
      size_ = std::exchange(o.size_, 0);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard() { unmap(); }

  const std::filesystem::path& path() const { return path_; }
  std::size_t size() const { return count_; }
  // Token i (little-endian on disk; assembled bytewise so the code is endian-neutral).
  std::uint16_t operator[](std::size_t i) const {
    const unsigned char* p = map_ + kShardHeaderBytes + 2 * i;
    return std::uint16_t(p[0] | (p[1] << 8));
  }

  // Fails, naming the file and position, if any token id is >= vocab.
  void check_vocab(int vocab) const {
    for (std::size_t i = 0; i < count_; ++i)
      PGOLF_CHECK((*this)[i] < vocab, "shard ", path_.string(), ": token id ", (*this)[i], " at position ", i,
                  " is outside the vocabulary of ", vocab);
  }

 private:
  std::int32_t word(std::size_t i) const {
    const unsigned char* p = map_ + 4 * i;
    return std::int32_t(std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                        std::uint32_t(p[3]) << 24);
  }
  void unmap() {
    if (map_ != nullptr) ::munmap(const_cast<unsigned char*>(map_), size_);
    map_ = nullptr;
  }

  std::filesystem::path path_;
  const unsigned char* map_ = nullptr;
  std::size_t size_ = 0, count_ = 0;
};

// Writes tokens as a shard (little-endian regardless of the host).
inline void write_shard(const std::filesystem::path& path, std::span<const std::uint16_t> tokens) {
  PGOLF_CHECK(tokens.size() <= 0x7fffffffu, "shard ", path.string(), ": too many tokens (", tokens.size(), ")");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  PGOLF_CHECK(out.good(), "shard ", path.string(), ": cannot open for writing");
  unsigned char header[kShardHeaderBytes] = {};
  const std::uint32_t words[3] = {std::uint32_t(kShardMagic), std::uint32_t(kShardVersion), std::uint32_t(tokens.size())};
  for (int w = 0; w < 3; ++w)
    for (int b = 0; b < 4; ++b) header[4 * w + b] = (unsigned char)(words[w] >> (8 * b));
  out.write(reinterpret_cast<const char*>(header), sizeof header);
  std::string body(2 * tokens.size(), '\0');
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    body[2 * i] = char(tokens[i] & 0xff);
    body[2 * i + 1] = char(tokens[i] >> 8);
  }
  out.write(body.data(), std::streamsize(body.size()));
  out.close();
  PGOLF_CHECK(!out.fail(), "shard ", path.string(), ": write failed");
}

}  // namespace pgolf::data
