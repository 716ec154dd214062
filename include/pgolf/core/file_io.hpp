// Whole-file reads and atomic writes, plus little-endian field packing, for the binary formats the
// library writes itself (checkpoints, artifacts). Errors name the file.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "pgolf/core/error.hpp"

namespace pgolf {

inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path) {
  PGOLF_CHECK(std::filesystem::is_regular_file(path), "file ", path.string(), " does not exist or is not a file");
  std::ifstream in(path, std::ios::binary);
  PGOLF_CHECK(in.good(), "cannot open ", path.string());
  std::vector<std::uint8_t> bytes(std::filesystem::file_size(path));
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  PGOLF_CHECK(in.gcount() == std::streamsize(bytes.size()), "short read from ", path.string());
  return bytes;
}

// Writes to a temporary name and renames, so a crash never leaves a half-written file behind.
inline void write_file_bytes(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    PGOLF_CHECK(out.good(), "cannot open ", tmp.string(), " for writing");
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    out.flush();
    PGOLF_CHECK(out.good(), "write to ", tmp.string(), " failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

// Appends / reads fixed-width little-endian fields (the library targets little-endian hosts).
class ByteWriter {
 public:
  template <class V>
  void put(const V& v) {
    static_assert(std::is_trivially_copyable_v<V>);
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(V));
  }
  template <class V>
  void put_span(std::span<const V> v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
    bytes_.insert(bytes_.end(), p, p + v.size_bytes());
  }
  std::vector<std::uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> bytes, std::string what) : bytes_(bytes), what_(std::move(what)) {}
  template <class V>
  V get() {
    V v;
    get_into(std::span<V>(&v, 1));
    return v;
  }
  template <class V>
  void get_into(std::span<V> out) {
    PGOLF_CHECK(at_ + out.size_bytes() <= bytes_.size(), what_, " ends early: needed ", out.size_bytes(),
                " more bytes at offset ", at_, " of ", bytes_.size());
    std::memcpy(out.data(), bytes_.data() + at_, out.size_bytes());
    at_ += out.size_bytes();
  }
  std::size_t offset() const { return at_; }
  std::size_t remaining() const { return bytes_.size() - at_; }

 private:
  std::span<const std::uint8_t> bytes_;
  std::string what_;
  std::size_t at_ = 0;
};

}  // namespace pgolf
