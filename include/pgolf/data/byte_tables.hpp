// Byte accounting for val_bpb, built from the SentencePiece model exactly as the reference's
// build_sentencepiece_luts: for every id, the UTF-8 byte length of its piece without a leading
// "▁" (1 for byte-fallback pieces, 0 for control/unknown/unused), whether the piece starts with
// "▁", and whether the id is a boundary (control/unknown/unused, and any id past the tokenizer's
// vocabulary). A target y after token p counts base_bytes[y] + (leading_space[y] && !boundary[p]).
#pragma once

#include <sentencepiece_processor.h>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "pgolf/core/error.hpp"

namespace pgolf::data {

class Tokenizer {
 public:
  explicit Tokenizer(const std::filesystem::path& model) : path_(model) {
    PGOLF_CHECK(std::filesystem::is_regular_file(model), "tokenizer model ", model.string(),
                " not found (set --tokenizer-path or TOKENIZER_PATH)");
    sentencepiece::util::Status status;
    // A malformed model can also throw from inside SentencePiece (its trie builder rejects an empty
    // piece with an exception, found by fuzz_tokenizer): the same error, naming the file.
    try {
      status = sp_.Load(model.string());
    } catch (const std::exception& e) {
      PGOLF_FAIL("tokenizer model ", model.string(), " could not be loaded: ", e.what());
    }
    PGOLF_CHECK(status.ok(), "tokenizer model ", model.string(), " could not be loaded: ", status.ToString());
  }
  int vocab() const { return sp_.GetPieceSize(); }
  const sentencepiece::SentencePieceProcessor& processor() const { return sp_; }
  const std::filesystem::path& path() const { return path_; }

  std::vector<int> encode(const std::string& text) const {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    PGOLF_CHECK(status.ok(), "tokenizer ", path_.string(), ": encoding failed: ", status.ToString());
    return ids;
  }

  // The model's vocabulary must be the tokenizer's.
  void check_vocab(int model_vocab) const {
    PGOLF_CHECK(vocab() == model_vocab, "tokenizer ", path_.string(), " has vocab size ", vocab(),
                " but the model's spec has vocab ", model_vocab, "; they must match");
  }

 private:
  std::filesystem::path path_;
  sentencepiece::SentencePieceProcessor sp_;
};

struct ByteTables {
  std::vector<std::int16_t> base_bytes;
  std::vector<std::uint8_t> leading_space, boundary;

  ByteTables(const Tokenizer& tok, int model_vocab) {
    const auto& sp = tok.processor();
    const int n = sp.GetPieceSize();
    const int size = n > model_vocab ? n : model_vocab;
    base_bytes.assign(size, 0);
    leading_space.assign(size, 0);
    boundary.assign(size, 1);
    const std::string space = "\xe2\x96\x81";  // U+2581
    for (int id = 0; id < n; ++id) {
      if (sp.IsControl(id) || sp.IsUnknown(id) || sp.IsUnused(id)) continue;
      boundary[id] = 0;
      if (sp.IsByte(id)) {
        base_bytes[id] = 1;
        continue;
      }
      std::string piece = sp.IdToPiece(id);
      if (piece.rfind(space, 0) == 0) {
        leading_space[id] = 1;
        piece = piece.substr(space.size());
      }
      base_bytes[id] = std::int16_t(piece.size());
    }
  }

  // Bytes the target token stands for, given the token before it.
  int token_bytes(int prev, int target) const {
    return base_bytes[target] + (leading_space[target] && !boundary[prev] ? 1 : 0);
  }
};

}  // namespace pgolf::data
