// Documents in, challenge shards out, as the challenge's export does it: every document is encoded
// with the SentencePiece model and prefixed with BOS (no EOS); the first val_docs documents form
// the validation stream, the rest the training stream; each stream is cut into shards of exactly
// shard_tokens tokens (the last one shorter), documents straddling shard boundaries.
// Files: <prefix>_val_000000.bin, ..., <prefix>_train_000000.bin, ...
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <istream>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/data/jsonl.hpp"
#include "pgolf/data/shard.hpp"

namespace pgolf::data {

enum class DocFormat { text, jsonl };  // text: one document per line (empty lines skipped)

struct TokenizeOptions {
  DocFormat format = DocFormat::jsonl;
  std::string field = "text";          // the JSONL field holding the document
  long long val_docs = 0;              // leading documents that go to the validation split
  long long shard_tokens = 100'000'000;
  std::string prefix = "fineweb";
};

struct TokenizeResult {
  long long docs = 0, val_docs = 0, val_tokens = 0, train_tokens = 0;
  std::vector<std::filesystem::path> files;
};

// Accumulates one split's stream and writes a shard each time shard_tokens are ready.
class ShardWriter {
 public:
  ShardWriter(std::filesystem::path dir, std::string prefix, std::string split, long long shard_tokens,
              std::vector<std::filesystem::path>& files)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), split_(std::move(split)), cap_(std::size_t(shard_tokens)),
        files_(files) {}

  void add(std::uint16_t token) {
    buf_.push_back(token);
    ++total_;
    if (buf_.size() == cap_) flush();
  }
  void finish() {
    if (!buf_.empty()) flush();
  }
  long long total() const { return total_; }

 private:
  void flush() {
    char name[64];
    std::snprintf(name, sizeof name, "_%s_%06d.bin", split_.c_str(), index_++);
    const auto path = dir_ / (prefix_ + name);
    write_shard(path, buf_);
    files_.push_back(path);
    buf_.clear();
  }
  std::filesystem::path dir_;
  std::string prefix_, split_;
  std::size_t cap_;
  std::vector<std::filesystem::path>& files_;
  std::vector<std::uint16_t> buf_;
  long long total_ = 0;
  int index_ = 0;
};

// progress(bytes consumed so far) is called after every document.
inline TokenizeResult tokenize_to_shards(const Tokenizer& tok, std::istream& in, const std::filesystem::path& out_dir,
                                         const TokenizeOptions& o,
                                         const std::function<void(std::size_t)>& progress = {}) {
  PGOLF_CHECK(o.shard_tokens > 0, "shard size must be positive, got ", o.shard_tokens);
  PGOLF_CHECK(o.val_docs >= 0, "validation document count must be >= 0, got ", o.val_docs);
  PGOLF_CHECK(!o.prefix.empty() && o.prefix.find('/') == std::string::npos, "bad shard prefix '", o.prefix, "'");
  PGOLF_CHECK(tok.vocab() <= 65536, "tokenizer vocab ", tok.vocab(), " does not fit uint16 shards");
  const int bos = tok.processor().bos_id();
  PGOLF_CHECK(bos >= 0, "tokenizer ", tok.path().string(), " has no BOS piece");
  std::filesystem::create_directories(out_dir);

  TokenizeResult r;
  ShardWriter val(out_dir, o.prefix, "val", o.shard_tokens, r.files);
  ShardWriter train(out_dir, o.prefix, "train", o.shard_tokens, r.files);
  std::string line;
  std::size_t consumed = 0;
  long long line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    consumed += line.size() + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::string text;
    if (o.format == DocFormat::jsonl) {
      std::optional<std::string> field;
      try {
        field = json_string_field(line, o.field);
      } catch (const Error& e) {
        PGOLF_FAIL("input line ", line_no, ": ", e.what());
      }
      PGOLF_CHECK(field.has_value(), "input line ", line_no, ": no string field \"", o.field, "\"");
      text = std::move(*field);
    } else {
      text = std::move(line);
    }
    ShardWriter& w = r.docs < o.val_docs ? val : train;
    w.add(std::uint16_t(bos));
    for (int id : tok.encode(text)) w.add(std::uint16_t(id));
    ++r.docs;
    if (progress) progress(consumed);
  }
  PGOLF_CHECK(!in.bad(), "read error on the input");
  val.finish();
  train.finish();
  r.val_docs = std::min(r.docs, o.val_docs);
  r.val_tokens = val.total();
  r.train_tokens = train.total();
  return r;
}

}  // namespace pgolf::data
