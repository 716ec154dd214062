// Token streams with the reference trainer's semantics: train shards read in sorted order and
// wrapped around, each optimizer micro-step taking one contiguous span per rank (x and y shifted by
// one); validation tokens concatenated and truncated to a multiple of the sequence length plus one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/data/shard.hpp"

namespace pgolf::data {

// Shards named *_<split>_*.bin in dir, sorted by name (the reference's glob order).
inline std::vector<std::filesystem::path> find_shards(const std::filesystem::path& dir, const std::string& split) {
  namespace fs = std::filesystem;
  PGOLF_CHECK(fs::is_directory(dir), "data path ", dir.string(), " is not a directory (set --data-path or DATA_PATH)");
  std::vector<fs::path> files;
  const std::string tag = "_" + split + "_";
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.find(tag) != std::string::npos && e.path().extension() == ".bin")
      files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  PGOLF_CHECK(!files.empty(), "data path ", dir.string(), " holds no ", split, " shards (*", tag, "*.bin)");
  return files;
}

class TokenStream {
 public:
  TokenStream(std::vector<std::filesystem::path> files, int vocab) : files_(std::move(files)), vocab_(vocab) {
    PGOLF_CHECK(!files_.empty(), "TokenStream: no shard files");
    open(0);
  }

  // Appends the next n tokens to out, moving to the next shard (wrapping) as each is exhausted.
  void take(std::size_t n, std::vector<std::int32_t>& out) {
    std::size_t skipped_empty = 0;
    while (n > 0) {
      const std::size_t avail = shard_.size() - pos_;
      if (avail == 0) {
        PGOLF_CHECK(++skipped_empty <= files_.size(), "TokenStream: every shard is empty");
        open((file_ + 1) % files_.size());
        continue;
      }
      const std::size_t k = std::min(n, avail);
      for (std::size_t i = 0; i < k; ++i) out.push_back(shard_[pos_ + i]);
      pos_ += k;
      n -= k;
    }
  }

  std::size_t file_index() const { return file_; }
  std::size_t position() const { return pos_; }
  // Resumes at a position recorded by file_index()/position() (checkpoint resume).
  void seek(std::size_t file, std::size_t pos) {
    PGOLF_CHECK(file < files_.size(), "TokenStream::seek: shard ", file, " of ", files_.size());
    open(file);
    PGOLF_CHECK(pos <= shard_.size(), "TokenStream::seek: position ", pos, " beyond ", files_[file].string(), " (",
                shard_.size(), " tokens)");
    pos_ = pos;
  }

 private:
  void open(std::size_t i) {
    shard_ = Shard(files_[i]);
    shard_.check_vocab(vocab_);
    file_ = i;
    pos_ = 0;
  }

  std::vector<std::filesystem::path> files_;
  int vocab_;
  Shard shard_;
  std::size_t file_ = 0, pos_ = 0;
};

struct Batch {
  std::vector<std::int32_t> x, y;  // [rows, seq_len] row-major
  int rows = 0;
};

// DistributedTokenLoader of the reference: per micro-step the global stream yields one span of
// local_tokens + 1 per rank; this rank keeps its own.
class TokenLoader {
 public:
  TokenLoader(std::vector<std::filesystem::path> files, int vocab, int rank = 0, int world_size = 1)
      : stream_(std::move(files), vocab), rank_(rank), world_(world_size) {
    PGOLF_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "TokenLoader: rank ", rank,
                " is not in [0, world size ", world_size, ")");
  }

  Batch next_batch(long long global_tokens, int seq_len, int grad_accum_steps) {
    PGOLF_CHECK(seq_len > 0, "sequence length must be positive, got ", seq_len);
    PGOLF_CHECK(grad_accum_steps > 0, "gradient accumulation steps must be positive, got ", grad_accum_steps);
    const long long parts = (long long)world_ * grad_accum_steps;
    PGOLF_CHECK(global_tokens > 0 && global_tokens % parts == 0, "batch tokens ", global_tokens,
                " must be a positive multiple of world size x accumulation steps = ", parts);
    const long long local = global_tokens / parts;
    PGOLF_CHECK(local % seq_len == 0, "batch tokens per micro-step and rank (", local,
                ") must be divisible by the sequence length ", seq_len);
    const std::size_t span = std::size_t(local) + 1;
    chunk_.clear();
    stream_.take(span * world_, chunk_);
    Batch b;
    b.rows = int(local / seq_len);
    const auto* start = chunk_.data() + std::size_t(rank_) * span;
    b.x.assign(start, start + local);
    b.y.assign(start + 1, start + span);
    return b;
  }

  const TokenStream& stream() const { return stream_; }
  TokenStream& stream() { return stream_; }

 private:
  TokenStream stream_;
  int rank_, world_;
  std::vector<std::int32_t> chunk_;
};

// All validation shards, concatenated and truncated to 1 + floor((n - 1) / seq_len) * seq_len
// tokens. max_tokens > 0 first keeps only that many tokens (quick runs score a prefix).
inline std::vector<std::int32_t> load_validation_tokens(const std::vector<std::filesystem::path>& files, int seq_len,
                                                        int vocab, long long max_tokens = 0) {
  PGOLF_CHECK(seq_len > 0, "sequence length must be positive, got ", seq_len);
  std::vector<std::int32_t> tokens;
  for (const auto& f : files) {
    Shard s(f);
    s.check_vocab(vocab);
    for (std::size_t i = 0; i < s.size(); ++i) tokens.push_back(s[i]);
    if (max_tokens > 0 && (long long)tokens.size() >= max_tokens) break;
  }
  if (max_tokens > 0 && (long long)tokens.size() > max_tokens) tokens.resize(std::size_t(max_tokens));
  PGOLF_CHECK(tokens.size() > std::size_t(seq_len), "validation set has ", tokens.size(),
              " tokens, fewer than one sequence of ", seq_len, " plus one");
  const std::size_t usable = (tokens.size() - 1) / std::size_t(seq_len) * std::size_t(seq_len);
  tokens.resize(usable + 1);
  return tokens;
}

}  // namespace pgolf::data
