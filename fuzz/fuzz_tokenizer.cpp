// libFuzzer target: the tokenizer path (pgolf/data/byte_tables.hpp, pgolf/data/tokenize.hpp), i.e.
// what a user feeds the tokenizer tool and the val_bpb byte accounting. The first input byte picks
// the mode, the rest is the payload:
//   mode 0, 1: the payload is a document: encoded with the bundled sp1024 model, every id must be
//              inside the vocabulary and every (previous, target) pair must have a byte count;
//   mode 2:    the payload is an input file for tokenize_to_shards (bit 2 of the first byte: JSONL
//              or plain text; bits 3..5: the shard size, 32 << bits tokens), written to a scratch
//              directory; the shards it reports must read back with the token counts it reports;
//   mode 3:    the payload is a tokenizer model file (Tokenizer + ByteTables on it).
// A pgolf::Error is the expected outcome; anything else is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>

#include "fuzz_common.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/data/shard.hpp"
#include "pgolf/data/tokenize.hpp"

namespace {

const pgolf::data::Tokenizer& sp1024() {
  static const pgolf::data::Tokenizer tok(std::filesystem::path(PGOLF_DATA_DIR) / "tokenizers/fineweb_1024_bpe.model");
  return tok;
}

void check_ids(const pgolf::data::Tokenizer& tok, const pgolf::data::ByteTables& tables, const std::string& text) {
  const auto ids = tok.encode(text);
  int prev = tok.processor().bos_id() >= 0 ? tok.processor().bos_id() : 0;
  for (int id : ids) {
    if (id < 0 || id >= tok.vocab()) __builtin_trap();
    if (tables.token_bytes(prev, id) < 0) __builtin_trap();
    prev = id;
  }
}

void document(const std::string& text) {
  static const pgolf::data::ByteTables tables(sp1024(), sp1024().vocab());
  check_ids(sp1024(), tables, text);
}

void tokenize_file(std::uint8_t flags, const std::string& input) {
  namespace fs = std::filesystem;
  struct Scratch {  // in memory where /dev/shm exists; removed when the process ends
    fs::path dir = (fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) /
                   ("pgolf_fuzz_tokenize_" + std::to_string(::getpid()));
    ~Scratch() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  };
  static const Scratch scratch;
  const fs::path& dir = scratch.dir;
  fs::remove_all(dir);
  pgolf::data::TokenizeOptions o;
  o.format = (flags & 4) ? pgolf::data::DocFormat::text : pgolf::data::DocFormat::jsonl;
  // 32..4096 tokens: shards cut mid-document, but few files per input (one-token shards made a
  // 4 KB input write a thousand files, 30 executions a second).
  o.shard_tokens = 32 << ((flags >> 3) & 7);
  o.val_docs = 1;
  o.prefix = "fuzz";
  std::istringstream in(input);
  const auto r = pgolf::data::tokenize_to_shards(sp1024(), in, dir, o);
  long long total = 0;
  for (const auto& f : r.files) {
    pgolf::data::Shard s(f);
    if (s.size() == 0 || s.size() > std::size_t(o.shard_tokens)) __builtin_trap();
    s.check_vocab(sp1024().vocab());
    total += (long long)s.size();
  }
  if (total != r.val_tokens + r.train_tokens || r.val_docs > r.docs) __builtin_trap();
}

void model_file(const std::uint8_t* data, std::size_t size) {
  static pgolf::fuzz::ScratchFile file("pgolf_fuzz_tokenizer_model");
  const pgolf::data::Tokenizer tok(file.write(data, size));
  const pgolf::data::ByteTables tables(tok, tok.vocab());
  const pgolf::data::ByteTables wider(tok, tok.vocab() + 7);  // a model vocabulary past the tokenizer's
  if (int(wider.boundary.size()) != tok.vocab() + 7 || !wider.boundary.back()) __builtin_trap();
  check_ids(tok, tables, "Hello, fuzz! 123 \xc3\xa9t\xc3\xa9 \xe2\x96\x81 \xff\xfe");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t flags = data[0];
  const std::string payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (flags & 3) {
      case 0:
      case 1: document(payload); break;
      case 2: tokenize_file(flags, payload); break;
      case 3: model_file(data + 1, size - 1); break;
    }
  } catch (const pgolf::Error&) {
  }
  return 0;
}
