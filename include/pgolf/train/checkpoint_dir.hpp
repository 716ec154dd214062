// CheckpointDir: the checkpoints of one run folder. Periodic ones are
// <run>/checkpoints/step_<step, 8 digits>.bin, and inside the end phase (late replay,
// self-distillation, after the last step) step_<step>_end_<the phase's steps, 8 digits>.bin; the
// newest `keep` of them kept, by step and then by end-phase step; the final one is
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
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
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
  // end: the end phase's optimizer steps taken (0: a checkpoint of the main loop).
  std::filesystem::path periodic_path(long long step, long long end = 0) const {
    return periodic_dir() / (end > 0 ? format("step_%08lld_end_%08lld.bin", step, end) : format("step_%08lld.bin", step));
  }

  // Writes the checkpoint of (step, end) under checkpoints/ and deletes all but the newest `keep`.
  std::filesystem::path write_periodic(long long step, std::span<const std::uint8_t> bytes, long long end = 0) const {
    const auto path = periodic_path(step, end);
    if (kill_at_ == step && end == 0) die_mid_write(path, bytes);
    write_file_bytes(path, bytes);
    auto all = periodic();
    if (all.size() > std::size_t(keep_))
      for (std::size_t k = 0; k + std::size_t(keep_) < all.size(); ++k) std::filesystem::remove(all[k].path);
    return path;
  }
  void write_final(std::span<const std::uint8_t> bytes) const { write_file_bytes(final_path(), bytes); }

  // Stale temp files of interrupted writes, removed; returns them for the log.
  std::vector<std::filesystem::path> remove_stale() const {
    auto a = remove_stale_temp_files(run_), b = remove_stale_temp_files(periodic_dir());
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  struct Entry {
    long long step = 0, end = 0;  // end: the end phase's steps taken (0 in the main loop)
    std::filesystem::path path;
  };
  // Periodic checkpoints, oldest first: by step, then by end-phase step (named by the scheme above;
  // other files ignored).
  std::vector<Entry> periodic() const {
    std::vector<Entry> out;
    std::error_code ec;
    if (!std::filesystem::is_directory(periodic_dir(), ec)) return out;
    for (const auto& e : std::filesystem::directory_iterator(periodic_dir(), ec)) {
      if (!e.is_regular_file()) continue;
      const std::string n = e.path().filename().string();
      long long step = -1, end = 0;
      char tail = 0;
      const bool main_loop = n.size() == 17 && std::sscanf(n.c_str(), "step_%8lld.bi%c", &step, &tail) == 2;
      const bool end_phase = n.size() == 30 && std::sscanf(n.c_str(), "step_%8lld_end_%8lld.bi%c", &step, &end, &tail) == 3 &&
                             end > 0;
      if ((main_loop || end_phase) && tail == 'n' && step >= 0 && n == periodic_path(step, end).filename().string())
        out.push_back({step, end, e.path()});
    }
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return std::pair(a.step, a.end) < std::pair(b.step, b.end); });
    return out;
  }

  // The newest checkpoint that decodes for this model (fingerprint and checksum), by step and then
  // by end-phase step; the final checkpoint wins a tie. warn receives one line per damaged file skipped.
  template <class T, class Warn>
  std::optional<std::filesystem::path> latest(std::uint64_t fingerprint, Warn&& warn) const {
    std::vector<Entry> all = periodic();
    std::error_code ec;
    if (std::filesystem::is_regular_file(final_path(), ec))
      all.push_back({step_in_header(final_path()), std::numeric_limits<long long>::max(), final_path()});
    std::stable_sort(all.begin(), all.end(),
                     [](const Entry& a, const Entry& b) { return std::pair(a.step, a.end) < std::pair(b.step, b.end); });
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      try {
        (void)decode_checkpoint<T>(read_file_bytes(it->path), fingerprint, it->path.string());
        return it->path;
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
