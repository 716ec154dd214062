// The PRISM toy tasks (PRISM.md 3) as a Trainer data source, with a held-out evaluation.
//
// Convention of the reference harness: token 0 is PAD, 1 is SEP, data tokens start at 2, and
// logits[t] are scored against targets[t] without a shift (targets < 0: not scored).
//   copy       [a_1..a_k, SEP, PAD x k], T = 2k+1; positions k..2k-1 must emit a_1..a_k. V = 18 for k = 8.
//   induction  [k1 v1 .. kn vn, SEP, q, PAD], T = 2n+3; keys distinct, the last position must emit
//              the value of key q. V = 12 (10 data tokens).
//   reasoning  [v0, op1, d1, .., opn, dn, SEP, PAD], T = 2n+3: a saturating ADD/SUB chain over values
//              0..R-1 (value v is token 4+v, ADD 2, SUB 3, d in 1..max(1, R/4)); the answer is scored
//              at SEP. reasoning_leaky is the reference's layout: the answer is also the input at
//              the scored position (a label leak).
//   mini_lm    bytes (id = byte + 1, V = 257) of a text file, windows of seq_len, next byte scored
//              everywhere; the file's last heldout_fraction is held out for evaluation (the
//              reference's 1 KB corpus has no split and only measures memorisation).
// Every sequence is drawn from its own counter-based generator keyed by (seed, stream, index), so
// the stream is the same whatever the batch size, every model sees the identical data, and the
// held-out sequences come from a stream training never touches.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/data/token_stream.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/curriculum.hpp"

namespace pgolf::data {

enum class ToyTask { copy, induction, reasoning, reasoning_leaky, mini_lm };

inline std::string_view to_string(ToyTask t) {
  switch (t) {
    case ToyTask::copy: return "copy";
    case ToyTask::induction: return "induction";
    case ToyTask::reasoning: return "reasoning";
    case ToyTask::reasoning_leaky: return "reasoning_leaky";
    case ToyTask::mini_lm: return "mini_lm";
  }
  return "?";
}
inline ToyTask parse_toy_task(std::string_view s) {
  for (ToyTask t : {ToyTask::copy, ToyTask::induction, ToyTask::reasoning, ToyTask::reasoning_leaky, ToyTask::mini_lm})
    if (to_string(t) == s) return t;
  PGOLF_FAIL("unknown toy task '", std::string(s), "' (copy, induction, reasoning, reasoning_leaky, mini_lm)");
}

struct ToyTaskOptions {
  int copy_half = 8;          // k
  int copy_tokens = 16;       // data tokens of copy
  int induction_pairs = 3;    // n
  int induction_tokens = 10;  // data tokens of induction
  int reasoning_steps = 4;
  int reasoning_range = 16;   // R
  int mini_lm_seq = 48;
  std::string corpus_path;    // mini_lm
  double heldout_fraction = 0.1;
  int eval_sequences = 1024;
};

constexpr int toy_vocab(ToyTask t, const ToyTaskOptions& o = {}) {
  switch (t) {
    case ToyTask::copy: return 2 + o.copy_tokens;
    case ToyTask::induction: return 2 + o.induction_tokens;
    case ToyTask::reasoning:
    case ToyTask::reasoning_leaky: return 4 + o.reasoning_range;
    case ToyTask::mini_lm: return 257;
  }
  return 0;
}
constexpr int toy_seq_len(ToyTask t, const ToyTaskOptions& o = {}) {
  switch (t) {
    case ToyTask::copy: return 2 * o.copy_half + 1;
    case ToyTask::induction: return 2 * o.induction_pairs + 3;
    case ToyTask::reasoning:
    case ToyTask::reasoning_leaky: return 2 * o.reasoning_steps + 3;
    case ToyTask::mini_lm: return o.mini_lm_seq;
  }
  return 0;
}

// SplitMix64 keyed by (seed, stream, index): one small generator per sequence.
class SequenceRng {
 public:
  SequenceRng(std::uint64_t seed, std::uint64_t stream, std::uint64_t index)
      : s_(seed * 0x9E3779B97F4A7C15ull ^ (stream + 1) * 0xBF58476D1CE4E5B9ull ^ (index + 1) * 0x94D049BB133111EBull) {
    next();
  }
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return int(next() % std::uint64_t(n)); }  // n is tiny: the modulo bias is < 1e-17

 private:
  std::uint64_t s_;
};

// Held-out scoring shared by the task sources: `count` sequences made by make(i, x, y), in batches of
// the model's size (a short last batch is filled with unscored rows); CE and argmax accuracy over
// the scored positions.
struct HeldoutScore {
  double loss = 0;
  long long scored = 0, correct = 0;
  double mean_loss() const { return loss / double(std::max(scored, 1LL)); }
  double accuracy() const { return double(correct) / double(std::max(scored, 1LL)); }
};
template <class Model, class Make>
HeldoutScore score_heldout(Model& m, std::size_t count, int seq_len, int vocab, Make&& make) {
  const std::size_t B = std::size_t(m.batch()), T = std::size_t(seq_len), V = std::size_t(vocab);
  PGOLF_CHECK(std::size_t(m.seq_len()) == T, "evaluate: the model runs sequences of ", m.seq_len(), ", the task has ", T);
  std::vector<std::int32_t> x(B * T), y(B * T);
  HeldoutScore s;
  for (std::size_t s0 = 0; s0 < count; s0 += B) {
    for (std::size_t r = 0; r < B; ++r) {
      if (s0 + r < count) {
        make(s0 + r, x.data() + r * T, y.data() + r * T);
      } else {
        std::fill_n(x.data() + r * T, T, 0);
        std::fill_n(y.data() + r * T, T, -1);
      }
    }
    m.forward(x, y);
    const auto nll = m.row_losses();
    const auto logits = m.logits();
    for (std::size_t n = 0; n < B * T; ++n) {
      if (y[n] < 0) continue;
      s.loss += double(nll[n]);
      ++s.scored;
      const auto row = logits.subspan(n * V, V);
      s.correct += std::size_t(std::max_element(row.begin(), row.end()) - row.begin()) == std::size_t(y[n]) ? 1 : 0;
    }
  }
  return s;
}

class ToyTaskData {
 public:
  struct Metrics {
    double loss = 0, accuracy = 0;  // mean CE (nats) and argmax accuracy over scored positions
    long long scored = 0;
    bool bytes = false;             // mini_lm: one token per byte, so bits per byte = loss / ln 2
    double val_loss() const { return loss; }
    double val_bpb() const { return bytes ? loss / std::log(2.0) : std::numeric_limits<double>::quiet_NaN(); }
  };

  ToyTaskData(ToyTask task, ToyTaskOptions o, std::uint64_t seed) : task_(task), o_(std::move(o)), seed_(seed) {
    PGOLF_CHECK(o_.copy_half > 0 && o_.copy_tokens > 0, "copy: copy_half and copy_tokens must be positive");
    PGOLF_CHECK(o_.induction_pairs > 0 && o_.induction_tokens >= o_.induction_pairs,
                "induction: need at least as many data tokens (", o_.induction_tokens, ") as pairs (",
                o_.induction_pairs, ")");
    PGOLF_CHECK(o_.reasoning_steps > 0 && o_.reasoning_range > 1, "reasoning: steps must be positive and range > 1");
    PGOLF_CHECK(o_.eval_sequences > 0, "eval_sequences must be positive, got ", o_.eval_sequences);
    if (task_ == ToyTask::mini_lm) {
      PGOLF_CHECK(!o_.corpus_path.empty(), "mini_lm: no corpus file given");
      PGOLF_CHECK(o_.heldout_fraction > 0 && o_.heldout_fraction < 1, "mini_lm: heldout_fraction must be in (0, 1)");
      const auto bytes = read_file_bytes(o_.corpus_path);
      const std::size_t held = std::size_t(double(bytes.size()) * o_.heldout_fraction);
      const std::size_t need = std::size_t(o_.mini_lm_seq) + 2;
      PGOLF_CHECK(held >= need && bytes.size() - held >= need, "mini_lm: ", o_.corpus_path, " holds ", bytes.size(),
                  " bytes, too few for windows of ", o_.mini_lm_seq, " in both splits");
      for (std::size_t i = 0; i < bytes.size(); ++i)
        (i < bytes.size() - held ? train_text_ : heldout_text_).push_back(std::int32_t(bytes[i]) + 1);
    }
  }

  ToyTask task() const { return task_; }
  int vocab() const { return toy_vocab(task_, o_); }
  int seq_len() const { return toy_seq_len(task_, o_); }
  const ToyTaskOptions& options() const { return o_; }
  std::size_t train_bytes() const { return train_text_.size(); }
  std::size_t heldout_bytes() const { return heldout_text_.size(); }

  // Sequence `index` of a stream (0: training, 1: held-out) into x, y (seq_len each).
  void sequence(std::uint64_t stream, std::uint64_t index, std::int32_t* x, std::int32_t* y) const {
    SequenceRng r(seed_, stream, index);
    const int T = seq_len();
    std::fill(x, x + T, 0);
    std::fill(y, y + T, -1);
    switch (task_) {
      case ToyTask::copy: {
        const int k = o_.copy_half;
        for (int j = 0; j < k; ++j) x[j] = 2 + r.below(o_.copy_tokens);
        x[k] = 1;
        for (int j = 0; j < k; ++j) y[k + j] = x[j];
        break;
      }
      case ToyTask::induction: {
        const int n = o_.induction_pairs;
        std::vector<int> pool(std::size_t(o_.induction_tokens));
        for (int i = 0; i < o_.induction_tokens; ++i) pool[std::size_t(i)] = 2 + i;
        for (int i = 0; i < n; ++i) std::swap(pool[std::size_t(i)], pool[std::size_t(i + r.below(o_.induction_tokens - i))]);
        for (int i = 0; i < n; ++i) {
          x[2 * i] = pool[std::size_t(i)];
          x[2 * i + 1] = 2 + r.below(o_.induction_tokens);
        }
        const int q = r.below(n);
        x[2 * n] = 1;
        x[2 * n + 1] = x[2 * q];
        y[2 * n + 2] = x[2 * q + 1];
        break;
      }
      case ToyTask::reasoning:
      case ToyTask::reasoning_leaky: {
        const int R = o_.reasoning_range, n = o_.reasoning_steps, dmax = std::max(1, R / 4);
        int v = r.below(R);
        x[0] = 4 + v;
        for (int i = 0; i < n; ++i) {
          const bool add = r.below(2) == 0;
          const int d = 1 + r.below(dmax);
          x[1 + 2 * i] = add ? 2 : 3;
          x[2 + 2 * i] = 4 + d;
          v = std::clamp(add ? v + d : v - d, 0, R - 1);
        }
        x[2 * n + 1] = 1;
        if (task_ == ToyTask::reasoning_leaky) {
          x[2 * n + 2] = 4 + v;  // the reference: the answer is the input at the scored position
          y[2 * n + 2] = 4 + v;
        } else {
          y[2 * n + 1] = 4 + v;
        }
        break;
      }
      case ToyTask::mini_lm: {
        const auto& text = stream == 0 ? train_text_ : heldout_text_;
        const std::size_t start = std::size_t(r.next() % std::uint64_t(text.size() - std::size_t(T) - 1));
        std::copy_n(text.begin() + std::ptrdiff_t(start), T, x);
        std::copy_n(text.begin() + std::ptrdiff_t(start) + 1, T, y);
        break;
      }
    }
  }

  void heldout_sequence(std::uint64_t i, std::int32_t* x, std::int32_t* y) const { sequence(1, i, x, y); }

  // The Trainer's interface.
  Batch next_batch(const TrainConfig& c, int accum) {
    PGOLF_CHECK(c.train_seq_len == seq_len(), "toy task ", std::string(to_string(task_)), " has sequences of ",
                seq_len(), " tokens, the config says train_seq_len = ", c.train_seq_len);
    Batch b;
    b.rows = int(c.batch_rows() / accum);
    const std::size_t T = std::size_t(seq_len());
    b.x.resize(std::size_t(b.rows) * T), b.y.resize(std::size_t(b.rows) * T);
    for (int i = 0; i < b.rows; ++i) sequence(0, next_++, b.x.data() + std::size_t(i) * T, b.y.data() + std::size_t(i) * T);
    return b;
  }

  // Held-out evaluation on eval_sequences fresh sequences, in batches of the model's size (a short
  // last batch is filled with unscored rows).
  template <class Model>
  Metrics evaluate(Model& m) const {
    const HeldoutScore h = score_heldout(m, std::size_t(o_.eval_sequences), seq_len(), vocab(),
                                         [&](std::size_t i, std::int32_t* x, std::int32_t* y) { sequence(1, i, x, y); });
    return Metrics{h.mean_loss(), h.accuracy(), h.scored, task_ == ToyTask::mini_lm};
  }
  static std::string describe(const Metrics& m) {
    return format("heldout_ce:%.4f heldout_acc:%.4f scored:%lld", m.loss, m.accuracy, m.scored);
  }
  static void add_metrics(JsonLine& j, const Metrics& m) {
    j.add("val_loss", m.loss).add("val_accuracy", m.accuracy).add("val_scored", m.scored);
    if (m.bytes) j.add("val_bpb", m.val_bpb());
  }
  std::pair<std::uint64_t, std::uint64_t> position() const { return {0, next_}; }
  void seek(std::pair<std::uint64_t, std::uint64_t> p) { next_ = p.second; }

 private:
  ToyTask task_;
  ToyTaskOptions o_;
  std::uint64_t seed_;
  std::uint64_t next_ = 0;
  std::vector<std::int32_t> train_text_, heldout_text_;
};

// Several toy tasks in one stream (the curriculum's data mix): each sequence comes from a source
// drawn by weight, padded to the longest task (PAD inputs, unscored targets), in the largest task
// vocabulary. With a CurriculumSchedule, the weight of the sources whose focus is the current phase
// is multiplied by its strength. Evaluation scores eval_sequences held-out sequences per source.
struct MixtureSource {
  ToyTask task;
  ExpertKind focus;
  double weight = 1.0;
};

class ToyTaskMixture {
 public:
  struct Metrics {
    double loss = 0, accuracy = 0;
    long long scored = 0;
    std::vector<double> source_loss, source_accuracy;
    double val_loss() const { return loss; }
    double val_bpb() const { return std::numeric_limits<double>::quiet_NaN(); }
  };

  ToyTaskMixture(std::vector<MixtureSource> sources, const ToyTaskOptions& o, std::uint64_t seed,
                 std::optional<CurriculumSchedule> curriculum = std::nullopt)
      : mix_(std::move(sources)), seed_(seed), curriculum_(curriculum) {
    PGOLF_CHECK(!mix_.empty(), "task mixture: no sources");
    if (curriculum_) curriculum_->validate();
    for (const auto& m : mix_) {
      PGOLF_CHECK(m.weight > 0, "task mixture: weights must be positive, got ", m.weight);
      tasks_.emplace_back(m.task, o, seed);
      vocab_ = std::max(vocab_, tasks_.back().vocab());
      seq_ = std::max(seq_, tasks_.back().seq_len());
    }
  }
  int vocab() const { return vocab_; }
  int seq_len() const { return seq_; }

  // The source of training sequence `index` at optimizer step `step`.
  std::size_t source_of(std::uint64_t index, long long step) const {
    std::vector<double> w;
    double total = 0;
    for (const auto& m : mix_) total += w.emplace_back(curriculum_ ? curriculum_->weight(m.weight, m.focus, step) : m.weight);
    SequenceRng r(seed_, 2, index);
    double u = double(r.next() >> 11) * 0x1.0p-53 * total;
    for (std::size_t k = 0; k < w.size(); ++k)
      if ((u -= w[k]) < 0) return k;
    return w.size() - 1;
  }

  Batch next_batch(const TrainConfig& c, int accum) {
    PGOLF_CHECK(c.train_seq_len == seq_, "task mixture has sequences of ", seq_, " tokens, the config says ",
                c.train_seq_len);
    const long long step = (long long)(calls_++ / std::uint64_t(accum));
    Batch b;
    b.rows = int(c.batch_rows() / accum);
    b.x.resize(std::size_t(b.rows) * seq_), b.y.resize(std::size_t(b.rows) * seq_);
    for (int i = 0; i < b.rows; ++i, ++next_) fill(source_of(next_, step), 0, next_, b.x.data() + std::size_t(i) * seq_,
                                                   b.y.data() + std::size_t(i) * seq_);
    return b;
  }

  void heldout_sequence(std::uint64_t i, std::int32_t* x, std::int32_t* y) const {
    fill(std::size_t(i % tasks_.size()), 1, i / tasks_.size(), x, y);
  }

  template <class Model>
  Metrics evaluate(Model& m) const {
    Metrics out;
    HeldoutScore all;
    for (std::size_t k = 0; k < tasks_.size(); ++k) {
      const HeldoutScore h =
          score_heldout(m, std::size_t(tasks_[k].options().eval_sequences), seq_, vocab_,
                        [&](std::size_t i, std::int32_t* x, std::int32_t* y) { fill(k, 1, i, x, y); });
      out.source_loss.push_back(h.mean_loss());
      out.source_accuracy.push_back(h.accuracy());
      all.loss += h.loss, all.scored += h.scored, all.correct += h.correct;
    }
    out.loss = all.mean_loss(), out.accuracy = all.accuracy(), out.scored = all.scored;
    return out;
  }
  std::string describe(const Metrics& m) const {
    std::string s = format("heldout_ce:%.4f heldout_acc:%.4f", m.loss, m.accuracy);
    for (std::size_t k = 0; k < tasks_.size(); ++k)
      s += format(" %s:%.4f/%.4f", std::string(to_string(mix_[k].task)).c_str(), m.source_loss[k], m.source_accuracy[k]);
    return s;
  }
  void add_metrics(JsonLine& j, const Metrics& m) const {
    j.add("val_loss", m.loss).add("val_accuracy", m.accuracy).add("val_scored", m.scored);
    for (std::size_t k = 0; k < tasks_.size(); ++k)
      j.add(std::string("val_loss_") + std::string(to_string(mix_[k].task)), m.source_loss[k])
          .add(std::string("val_accuracy_") + std::string(to_string(mix_[k].task)), m.source_accuracy[k]);
  }
  std::pair<std::uint64_t, std::uint64_t> position() const { return {calls_, next_}; }
  void seek(std::pair<std::uint64_t, std::uint64_t> p) { calls_ = p.first, next_ = p.second; }

 private:
  void fill(std::size_t k, std::uint64_t stream, std::uint64_t index, std::int32_t* x, std::int32_t* y) const {
    const int Tk = tasks_[k].seq_len();
    tasks_[k].sequence(stream, index, x, y);
    std::fill(x + Tk, x + seq_, 0);
    std::fill(y + Tk, y + seq_, -1);
  }

  std::vector<MixtureSource> mix_;
  std::vector<ToyTaskData> tasks_;
  std::uint64_t seed_;
  std::optional<CurriculumSchedule> curriculum_;
  int vocab_ = 0, seq_ = 0;
  std::uint64_t calls_ = 0, next_ = 0;
};

}  // namespace pgolf::data
