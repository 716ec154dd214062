// FineWebData: the Trainer's default data source, the challenge's tokenized FineWeb shards. It
// owns the tokenizer, its byte tables and the validation tokens (loaded up front), and opens the
// training shards on first use so evaluation-only runs need only validation shards.
//
// A data source gives the Trainer: next_batch(config, accumulation), evaluate(model) returning a
// metrics value with val_loss() and val_bpb(), describe/add_metrics for the log, and a position
// (two integers) for checkpoints. Toy tasks (data/toy_tasks.hpp) are the other source.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/data/token_stream.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/evaluate.hpp"

namespace pgolf {

class FineWebData {
 public:
  using Metrics = BpbMeter;

  FineWebData(const TrainConfig& c, int vocab)
      : vocab_(vocab),
        data_path_(checked(c.data_path, "data_path")),
        tokenizer_(checked(c.tokenizer_path, "tokenizer_path")),
        tables_((tokenizer_.check_vocab(vocab), data::ByteTables(tokenizer_, vocab))),
        val_(data::load_validation_tokens(data::find_shards(data_path_, "val"), c.train_seq_len, vocab, c.val_tokens)) {}

  const data::ByteTables& tables() const { return tables_; }
  std::span<const std::int32_t> val_tokens() const { return val_; }

  data::Batch next_batch(const TrainConfig& c, int accum) {
    return loader().next_batch(c.train_batch_tokens, c.train_seq_len, accum);
  }
  template <class Model>
  Metrics evaluate(Model& m) const {
    return pgolf::evaluate(m, val_, tables_);
  }
  static std::string describe(const Metrics& m) { return format("val_loss:%.4f val_bpb:%.4f", m.val_loss(), m.val_bpb()); }
  static void add_metrics(JsonLine& j, const Metrics& m) {
    j.add("val_loss", m.val_loss()).add("val_bpb", m.val_bpb()).add("val_tokens", m.tokens).add("val_bytes", m.bytes);
  }

  std::pair<std::uint64_t, std::uint64_t> position() const {
    if (loader_) return {loader_->stream().file_index(), loader_->stream().position()};
    return resume_;
  }
  void seek(std::pair<std::uint64_t, std::uint64_t> p) {
    resume_ = p;
    if (loader_) loader_->stream().seek(p.first, p.second);
  }

 private:
  static const std::string& checked(const std::string& p, const char* field) {
    PGOLF_CHECK(!p.empty(), "TrainConfig.", field, " is empty");
    return p;
  }
  data::TokenLoader& loader() {
    if (!loader_) {
      loader_.emplace(data::find_shards(data_path_, "train"), vocab_);
      if (resume_ != std::pair<std::uint64_t, std::uint64_t>{0, 0}) loader_->stream().seek(resume_.first, resume_.second);
    }
    return *loader_;
  }

  int vocab_;
  std::string data_path_;
  data::Tokenizer tokenizer_;
  data::ByteTables tables_;
  std::vector<std::int32_t> val_;
  std::optional<data::TokenLoader> loader_;
  std::pair<std::uint64_t, std::uint64_t> resume_{0, 0};
};

}  // namespace pgolf
