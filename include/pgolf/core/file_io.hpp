// Whole-file reads and atomic writes, plus little-endian field packing, for the binary formats the
// library writes itself (checkpoints, artifacts). Errors name the file.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

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

// Durable, atomic replacement: the bytes go to <path>.tmp, which is fsync'ed and renamed over
// <path>, and the directory is fsync'ed so the rename survives a power cut. A process killed at any
// point leaves either the old file or the new one, never a mix; at worst a stale .tmp remains
// (remove_stale_temp_files cleans those).
inline void write_file_bytes(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const std::filesystem::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PGOLF_CHECK(fd >= 0, "cannot open ", tmp.string(), " for writing (", std::strerror(errno), ")");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      std::filesystem::remove(tmp);
      PGOLF_FAIL("write to ", tmp.string(), " failed (", std::strerror(err), ")");
    }
    done += std::size_t(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int sync_err = errno;
  ::close(fd);
  if (!synced) {
    std::filesystem::remove(tmp);
    PGOLF_FAIL("fsync of ", tmp.string(), " failed (", std::strerror(sync_err), ")");
  }
  std::filesystem::rename(tmp, path);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// Removes the *.tmp files an interrupted write_file_bytes left in dir; returns what it removed.
inline std::vector<std::filesystem::path> remove_stale_temp_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> removed;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return removed;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".tmp") removed.push_back(e.path());
  for (const auto& p : removed) std::filesystem::remove(p, ec);
  return removed;
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
    if (out.empty()) return;  // memcpy from/to a null span is undefined
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
