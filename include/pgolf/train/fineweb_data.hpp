// FineWebData: the Trainer's default data source, the challenge's tokenized FineWeb shards. It
// owns the tokenizer, its byte tables and the validation tokens (loaded up front), and opens the
// training shards on first use so evaluation-only runs need only validation shards.
//
// A data source gives the Trainer: next_batch(config, accumulation), evaluate(model) returning a
// metrics value with val_loss() and val_bpb(), describe/add_metrics for the log, and a position
// (two integers) for checkpoints. Toy tasks (data/toy_tasks.hpp) are the other source.
// A source that supports data parallelism also has distribute(communicator): then next_batch
// returns this rank's slice of the global batch (the reference's DistributedTokenLoader) and
// evaluate() scores this rank's share of the validation sequences and sums the ranks' meters.
// A source may also have evaluate_sliding(model, stride) (sliding-window evaluation, used for the
// final scores when eval_stride > 0); FineWebData has it, the toy tasks do not.
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
#include "pgolf/dist/communicator.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/evaluate.hpp"
#include "pgolf/train/sliding_eval.hpp"

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
  // Data parallel: this process is comm's rank; the communicator outlives the source.
  void distribute(dist::Communicator& comm) {
    PGOLF_CHECK(!loader_, "FineWebData::distribute: call it before the first batch");
    comm_ = &comm;
  }
  template <class Model>
  Metrics evaluate(Model& m) const {
    return all_ranks([&](int rank, int world) { return pgolf::evaluate(m, val_, tables_, rank, world); });
  }
  // Sliding-window evaluation (train/sliding_eval.hpp) with the model's seq_len as the window; the
  // Trainer uses it for the final scores when eval_stride > 0, the standard one during training.
  template <class Model>
  Metrics evaluate_sliding(Model& m, int stride) const {
    return all_ranks([&](int rank, int world) { return pgolf::evaluate_sliding(m, val_, tables_, stride, rank, world); });
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
  // This rank's meter, summed over the ranks when data parallel.
  template <class Eval>
  Metrics all_ranks(Eval&& eval) const {
    if (comm_ == nullptr || comm_->size() == 1) return eval(0, 1);
    Metrics meter = eval(comm_->rank(), comm_->size());
    double sums[3] = {meter.loss_sum, meter.tokens, meter.bytes};  // counts: integers, exact in double
    comm_->all_reduce_sum(std::span<double>(sums));
    meter.loss_sum = sums[0], meter.tokens = sums[1], meter.bytes = sums[2];
    return meter;
  }
  static const std::string& checked(const std::string& p, const char* field) {
    PGOLF_CHECK(!p.empty(), "TrainConfig.", field, " is empty");
    return p;
  }
  data::TokenLoader& loader() {
    if (!loader_) {
      loader_.emplace(data::find_shards(data_path_, "train"), vocab_, comm_ ? comm_->rank() : 0, comm_ ? comm_->size() : 1);
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
  dist::Communicator* comm_ = nullptr;
};

}  // namespace pgolf
