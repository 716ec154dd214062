// CheckpointDir: the checkpoints of one run folder. Periodic ones are
// <run>/checkpoints/step_<step, 8 digits>.bin, the newest `keep` of them kept; the final one is
// <run>/checkpoint.bin. Every write is atomic and durable (core/file_io.hpp), so a run killed while
// writing keeps its previous checkpoint; the stale temp file is removed when the folder is next
// opened for training. latest() is what `--resume latest` loads: the highest step among all of them
// that decodes (a damaged newest one is skipped with a warning, never silently used).
#pragma once

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/train/checkpoint.hpp"

namespace pgolf {

class CheckpointDir {
 public:
  CheckpointDir(std::filesystem::path run_dir, int keep) : run_(std::move(run_dir)), keep_(std::max(1, keep)) {
    // Fault injection for the tests of this guarantee: PGOLF_TEST_KILL_DURING_CHECKPOINT=<step> makes
    // the write of that step's checkpoint die by SIGKILL with half of its bytes on disk.
    if (const char* s = std::getenv("PGOLF_TEST_KILL_DURING_CHECKPOINT")) kill_at_ = std::atoll(s);
  }

  const std::filesystem::path& run_dir() const { return run_; }
  std::filesystem::path periodic_dir() const { return run_ / "checkpoints"; }
  std::filesystem::path final_path() const { return run_ / "checkpoint.bin"; }
  std::filesystem::path periodic_path(long long step) const {
    return periodic_dir() / format("step_%08lld.bin", step);
  }

  // Writes step's checkpoint under checkpoints/ and deletes all but the newest `keep`.
  std::filesystem::path write_periodic(long long step, std::span<const std::uint8_t> bytes) const {
    const auto path = periodic_path(step);
    if (kill_at_ == step) die_mid_write(path, bytes);
    write_file_bytes(path, bytes);
    auto all = periodic();
    if (all.size() > std::size_t(keep_))
      for (std::size_t k = 0; k + std::size_t(keep_) < all.size(); ++k) std::filesystem::remove(all[k].second);
    return path;
  }
  void write_final(std::span<const std::uint8_t> bytes) const { write_file_bytes(final_path(), bytes); }

  // Stale temp files of interrupted writes, removed; returns them for the log.
  std::vector<std::filesystem::path> remove_stale() const {
    auto a = remove_stale_temp_files(run_), b = remove_stale_temp_files(periodic_dir());
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  // Periodic checkpoints by step, oldest first (named by the scheme above; other files ignored).
  std::vector<std::pair<long long, std::filesystem::path>> periodic() const {
    std::vector<std::pair<long long, std::filesystem::path>> out;
    std::error_code ec;
    if (!std::filesystem::is_directory(periodic_dir(), ec)) return out;
    for (const auto& e : std::filesystem::directory_iterator(periodic_dir(), ec)) {
      const std::string n = e.path().filename().string();
      long long step = -1;
      char tail = 0;
      if (e.is_regular_file() && n.size() == 17 && std::sscanf(n.c_str(), "step_%8lld.bi%c", &step, &tail) == 2 &&
          tail == 'n' && step >= 0)
        out.emplace_back(step, e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // The newest checkpoint that decodes for this model (fingerprint and checksum), by step; the
  // final checkpoint wins a tie. warn receives one line per damaged file skipped.
  template <class T, class Warn>
  std::optional<std::filesystem::path> latest(std::uint64_t fingerprint, Warn&& warn) const {
    std::vector<std::pair<long long, std::filesystem::path>> all = periodic();
    std::error_code ec;
    if (std::filesystem::is_regular_file(final_path(), ec)) all.emplace_back(step_in_header(final_path()), final_path());
    std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      try {
        (void)decode_checkpoint<T>(read_file_bytes(it->second), fingerprint, it->second.string());
        return it->second;
      } catch (const Error& e) {
        warn(format("skipping damaged checkpoint: %s", e.what()));
      }
    }
    return std::nullopt;
  }

  // A checkpoint's step and post-trained flag, read from its header without decoding the rest
  // (step -1 when the file is too short to hold one; the flag false for version 1);
  // decode_checkpoint checks them properly.
  struct HeaderPeek {
    long long step = -1;
    bool post_trained = false;
  };
  static HeaderPeek peek_header(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    char head[68] = {};
    in.read(head, sizeof head);
    HeaderPeek h;
    if (in.gcount() < 32) return h;
    std::int64_t step = 0;
    std::memcpy(&step, head + 24, sizeof step);  // magic 8, version 4, scalar 4, fingerprint 8
    h.step = step;
    if (in.gcount() < std::streamsize(sizeof head)) return h;
    std::uint32_t version = 0, flags = 0;
    std::memcpy(&version, head + 8, sizeof version);
    std::memcpy(&flags, head + 64, sizeof flags);  // after step, ms, shard, position and seed (8 each)
    h.post_trained = version >= 2 && (flags & 32u);
    return h;
  }
  static long long step_in_header(const std::filesystem::path& p) { return peek_header(p).step; }

 private:
  [[noreturn]] static void die_mid_write(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path.string() + ".tmp", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size() / 2));
    out.flush();
    std::raise(SIGKILL);
    std::abort();
  }

  std::filesystem::path run_;
  int keep_;
  long long kill_at_ = -1;
};

}  // namespace pgolf
