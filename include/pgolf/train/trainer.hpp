// Trainer<Model>: the one training loop. It reads the parameter table for the optimizer groups
// (Muon for block matrices, Adam for the embedding, the untied head and the scalars), accumulates
// gradients over micro-batches so every step sees exactly train_batch_tokens, schedules the learning
// rate (warmdown by iterations or by wall clock) and Muon's momentum warm-up, validates every
// val_loss_every steps, stops at the wall-clock cap, and stops with the step number when the loss
// stops being finite. The loop and its log lines follow the reference trainer step for step:
// validation time is excluded from the training clock, and a run validates at step 0 and at the end.
//
// Reproducibility: the model is initialised from the seed by a counter-based generator, data are
// read in a fixed order, and every CPU reduction has a fixed order, so the same seed and config
// give the same numbers bit for bit. A checkpoint holds the full state (parameters, optimizer
// buffers and counters, step, clock, data position), so a resumed run continues exactly.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/data/token_stream.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"
#include "pgolf/optim/schedule.hpp"
#include "pgolf/train/checkpoint.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/evaluate.hpp"
#include "pgolf/train/fineweb_data.hpp"
#include "pgolf/train/run_log.hpp"
#include "pgolf/train/token_recycling.hpp"

namespace pgolf {

// Backend hooks. A CPU model hands out std::spans and is stepped by Muon<T> / Adam<T>; a GPU model
// (GptCuda) hands out device buffers and provides its own optimizers (make_muon / make_adam) and
// host copies (params_host / set_params). The loop below is the same for both.
template <class M>
auto make_muon_for(M& m, const MuonOptions& o) {
  if constexpr (requires { m.make_muon(o); }) return m.make_muon(o);
  else return Muon<typename M::Scalar>(M::param_table, o);
}
template <class M>
auto make_adam_for(M& m, OptimGroup g, const AdamOptions& o) {
  if constexpr (requires { m.make_adam(g, o); }) return m.make_adam(g, o);
  else return Adam<typename M::Scalar>(M::param_table, g, o);
}
// The parameters in the table layout, on the host.
template <class M>
std::vector<typename M::Scalar> params_to_host(const M& m) {
  if constexpr (requires { m.params_host(); }) return m.params_host();
  else return {m.params().begin(), m.params().end()};
}
template <class M>
void params_from_host(M& m, std::span<const typename M::Scalar> p) {
  PGOLF_CHECK(p.size() == table_size(M::param_table), "parameters: got ", p.size(), " values, the model has ",
              table_size(M::param_table));
  if constexpr (requires { m.set_params(p); }) m.set_params(p);
  else std::copy(p.begin(), p.end(), m.params().begin());
}
// Optimizer state (a host span or a device buffer) to and from host vectors for checkpoints.
template <class T, class X>
std::vector<T> state_to_host(const X& x) {
  if constexpr (requires { x.download(std::span<T>()); }) {
    std::vector<T> v(x.size());
    if (!v.empty()) x.download(std::span<T>(v));
    return v;
  } else {
    return {x.begin(), x.end()};
  }
}
template <class T, class X>
void state_from_host(X&& x, const std::vector<T>& v, const char* what) {
  PGOLF_CHECK(v.size() == std::size_t(x.size()), "checkpoint ", what, " holds ", v.size(), " values, expected ",
              x.size());
  if constexpr (requires { x.upload(std::span<const T>()); }) {
    if (!v.empty()) x.upload(std::span<const T>(v));
  } else {
    std::copy(v.begin(), v.end(), x.begin());
  }
}

// What the Trainer needs from a model (Gpt and GptCuda satisfy it; so will every other family).
template <class M>
concept TrainableModel = requires(M m, std::span<const std::int32_t> ids, std::uint64_t seed) {
  typename M::Scalar;
  { M::param_table };
  { M::kVocab } -> std::convertible_to<int>;
  m.init(seed);
  { m.forward(ids, ids) } -> std::convertible_to<double>;
  m.backward(1.0);
  m.zero_grad();
  m.params();
  m.grads();
  m.row_losses();
};

// Data: where batches and evaluation come from (FineWebData by default; see fineweb_data.hpp for
// what a source provides, and data/toy_tasks.hpp for the PRISM toy tasks).
template <TrainableModel Model, class Data = FineWebData>
class Trainer {
 public:
  using T = typename Model::Scalar;
  using Metrics = typename Data::Metrics;

  struct TrainRecord {
    long long step;
    double train_loss, train_ms, lr_scale;
  };
  struct ValRecord {
    long long step;
    double val_loss, val_bpb, train_ms;  // val_bpb is NaN where the source has no byte count
  };
  struct Result {
    long long steps = 0;
    double train_ms = 0;
    bool stopped_early = false;  // by the wall-clock cap
    std::vector<TrainRecord> train;
    std::vector<ValRecord> val;
  };

  // Validates the config, builds the data source from it (FineWebData: the tokenizer, its byte
  // tables and the validation tokens; training shards are opened by run(), so eval-only use needs
  // only validation shards), and initialises the model from the seed.
  Trainer(TrainConfig config, RunLog& log)
    requires std::constructible_from<Data, const TrainConfig&, int>
      : Trainer(std::move(config), log, [](const TrainConfig& c) { return Data(c, Model::kVocab); }, Tag{}) {}
  // With a data source built by the caller.
  Trainer(TrainConfig config, RunLog& log, Data data)
      : Trainer(std::move(config), log, [&](const TrainConfig&) { return std::move(data); }, Tag{}) {}

 private:
  struct Tag {};
  // The data source is built in place from the validated config (FineWebData does not move).
  template <class Make>
  Trainer(TrainConfig config, RunLog& log, Make&& make, Tag)
      : cfg_(validated(std::move(config))),
        log_(log),
        data_(make(cfg_)),
        model_(cfg_.micro_batch_rows(), cfg_.train_seq_len),
        embed_(make_adam_for(model_, OptimGroup::adam_embed, adam_options())),
        head_(make_adam_for(model_, OptimGroup::adam_head, adam_options())),
        scalar_(make_adam_for(model_, OptimGroup::adam_scalar, adam_options())) {
    // The matrix group: Muon, or Adam(W) like every other group.
    if (cfg_.optimizer == OptimizerKind::adamw)
      matrix_adam_.emplace(make_adam_for(model_, OptimGroup::muon_matrix, adam_options()));
    else
      muon_.emplace(make_muon_for(model_, MuonOptions{.momentum = cfg_.muon_momentum,
                                                      .ns_steps = cfg_.muon_backend_steps,
                                                      .ns_bf16 = cfg_.muon_ns_bf16}));
    if (cfg_.token_recycling > 0) {
      PGOLF_CHECK(kTokenWeights, "token_recycling needs a model that takes per-token loss weights "
                                 "(set_token_weights, e.g. Prism); this model has none");
      recycler_.emplace(cfg_.token_recycling);
    }
    model_.init(cfg_.seed);
  }

 public:

  Model& model() { return model_; }
  const TrainConfig& config() const { return cfg_; }
  Data& data() { return data_; }
  const Data& data() const { return data_; }
  long long step() const { return step_; }
  double train_ms() const { return train_ms_; }

  Metrics validate() { return data_.evaluate(model_); }

  // Called after every optimizer step with the steps taken so far and that step's training loss;
  // the model then holds the updated weights (golden replays and tools follow the trajectory).
  void on_step(std::function<void(long long step, double train_loss)> f) { on_step_ = std::move(f); }

  Result run() {
    const auto& c = cfg_;
    const int accum = c.grad_accum_steps();
    const double cap_ms = c.max_wallclock_seconds * 1000.0;
    const WarmdownSchedule warmdown{c.iterations, c.warmdown_iters, cap_ms};
    const WarmupCosineSchedule cosine{c.iterations, c.warmup_steps()};
    const MomentumWarmup warmup{c.muon_momentum_warmup_start, c.muon_momentum, c.muon_momentum_warmup_steps};
    const double embed_lr = head_.empty() ? c.tied_embed_lr : c.embed_lr;  // no head group: tied

    Result res;
    long long stop_after = -1;
    auto t0 = Clock::now();
    for (;;) {
      const bool last = step_ == c.iterations || (stop_after >= 0 && step_ >= stop_after);
      if (last || (c.val_loss_every > 0 && step_ % c.val_loss_every == 0)) {
        train_ms_ += ms_since(t0);
        const Metrics m = validate();
        log_.print(format("step:%lld/%lld %s train_time:%.0fms step_avg:%.2fms", step_, c.iterations,
                          data_.describe(m).c_str(), train_ms_, train_ms_ / double(std::max(step_, 1LL))));
        JsonLine line;
        line.add("event", "val").add("step", step_);
        data_.add_metrics(line, m);
        log_.metric(line.add("train_time_ms", train_ms_).str());
        res.val.push_back({step_, m.val_loss(), m.val_bpb(), train_ms_});
        t0 = Clock::now();
      }
      if (last) {
        if (stop_after >= 0 && step_ < c.iterations) {
          res.stopped_early = true;
          log_.print(format("stopping_early: wallclock_cap train_time:%.0fms step:%lld/%lld", train_ms_, step_,
                         c.iterations));
        }
        break;
      }

      const double scale = c.lr_schedule == LrSchedule::warmup_cosine ? cosine.multiplier(step_)
                                                                      : warmdown.multiplier(step_, train_ms_ + ms_since(t0));
      model_.zero_grad();
      double loss = 0;
      for (int a = 0; a < accum; ++a) {
        const data::Batch b = data_.next_batch(c, accum);
        loss += model_.forward(b.x, b.y) / accum;
        if constexpr (kTokenWeights) {
          if (recycler_) {
            const auto losses = std::span<const T>(model_.row_losses());
            model_.set_token_weights(std::span<const T>(recycler_->weights(losses, std::span<const std::int32_t>(b.y))));
            model_.backward(1.0 / accum);
            recycler_->update(losses, std::span<const std::int32_t>(b.y));
            continue;
          }
        }
        model_.backward(1.0 / accum);
      }
      if (!std::isfinite(loss)) {
        log_.finish_progress();
        PGOLF_FAIL("training diverged at step ", step_ + 1, "/", c.iterations, ": train_loss is ", loss,
                   " (lower the learning rates or enable --grad-clip-norm)");
      }
      if (c.grad_clip_norm > 0) clip_grad_norm(model_.grads(), c.grad_clip_norm);
      if (matrix_adam_) {
        matrix_adam_->step(model_.params(), model_.grads(), c.matrix_lr * scale);
      } else {
        muon_->set_momentum(warmup.at(step_));
        muon_->step(model_.params(), model_.grads(), c.matrix_lr * scale);
      }
      embed_.step(model_.params(), model_.grads(), embed_lr * scale);
      head_.step(model_.params(), model_.grads(), c.head_lr * scale);
      scalar_.step(model_.params(), model_.grads(), c.scalar_lr * scale);
      ++step_;

      const double approx_ms = train_ms_ + ms_since(t0);
      res.train.push_back({step_, loss, approx_ms, scale});
      if (on_step_) on_step_(step_, loss);
      if (c.train_log_every > 0 && (step_ <= 10 || step_ % c.train_log_every == 0 || stop_after >= 0))
        log_.print(format("step:%lld/%lld train_loss:%.4f train_time:%.0fms step_avg:%.2fms", step_, c.iterations, loss,
                       approx_ms, approx_ms / double(step_)));
      log_.metric(JsonLine()
                      .add("event", "train")
                      .add("step", step_)
                      .add("train_loss", loss)
                      .add("lr_scale", scale)
                      .add("train_time_ms", approx_ms)
                      .str());
      log_.progress(step_, c.iterations, approx_ms, loss);
      if (stop_after < 0 && cap_ms > 0 && approx_ms >= cap_ms) stop_after = step_;
    }
    log_.finish_progress();
    res.steps = step_;
    res.train_ms = train_ms_;
    return res;
  }

  // Full training state. Optimizer buffers are listed in a fixed order after the parameters.
  Checkpoint<T> checkpoint() const {
    Checkpoint<T> ck;
    ck.fingerprint = table_fingerprint(Model::param_table);
    ck.step = step_;
    ck.train_ms = train_ms_;
    ck.seed = cfg_.seed;
    std::tie(ck.data_file, ck.data_pos) = data_.position();
    ck.tensors.push_back(params_to_host(model_));
    ck.tensors.push_back(muon_ ? state_to_host<T>(muon_->momentum_buffer()) : std::vector<T>{});  // empty: adamw
    for (const AdamT* a : adams()) {
      ck.tensors.push_back(state_to_host<T>(a->first_moment()));
      ck.tensors.push_back(state_to_host<T>(a->second_moment()));
      ck.counters.push_back(a->steps_taken());
    }
    if (recycler_) {
      const auto st = recycler_->state();
      ck.tensors.emplace_back(st.begin(), st.end());
    }
    return ck;
  }

  void restore(const Checkpoint<T>& ck) {
    auto list = adams();
    const std::size_t n = list.size(), extra = recycler_ ? 1 : 0;
    PGOLF_CHECK(ck.tensors.size() == 2 + 2 * n + extra && ck.counters.size() == n,
                "checkpoint does not hold this trainer's state (", ck.tensors.size(), " tensors, ", ck.counters.size(),
                " counters; expected ", 2 + 2 * n + extra, " and ", n, ")");
    if (recycler_) {
      const auto& st = ck.tensors.back();
      recycler_->set_state(std::vector<double>(st.begin(), st.end()));
    }
    params_from_host(model_, std::span<const T>(ck.tensors[0]));
    if (muon_) state_from_host(muon_->momentum_buffer(), ck.tensors[1], "Muon momentum");
    else PGOLF_CHECK(ck.tensors[1].empty(), "checkpoint holds Muon momentum; this run uses AdamW for the matrices");
    for (std::size_t k = 0; k < n; ++k) {
      state_from_host(list[k]->first_moment(), ck.tensors[2 + 2 * k], "Adam first moment");
      state_from_host(list[k]->second_moment(), ck.tensors[3 + 2 * k], "Adam second moment");
      list[k]->set_steps_taken(ck.counters[k]);
    }
    step_ = ck.step;
    train_ms_ = ck.train_ms;
    data_.seek({ck.data_file, ck.data_pos});
  }

  void save_checkpoint(const std::filesystem::path& path) const { write_file_bytes(path, encode_checkpoint(checkpoint())); }

  // Loads the full state from a checkpoint file (resume), or only the weights when params_only.
  void load_checkpoint(const std::filesystem::path& path, bool params_only = false) {
    const auto ck = decode_checkpoint<T>(read_file_bytes(path), table_fingerprint(Model::param_table), path.string());
    if (params_only) {
      PGOLF_CHECK(ck.tensors[0].size() == Model::num_params, path.string(), " holds ", ck.tensors[0].size(),
                  " parameters, expected ", Model::num_params);
      params_from_host(model_, std::span<const T>(ck.tensors[0]));
    } else {
      restore(ck);
    }
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  }
  static TrainConfig validated(TrainConfig c) {
    c.validate();
    return c;
  }
  AdamOptions adam_options() const {
    return AdamOptions{.beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.adam_eps, .weight_decay = cfg_.weight_decay};
  }
  using AdamT = decltype(make_adam_for(std::declval<Model&>(), OptimGroup::adam_embed, AdamOptions{}));
  // The Adam groups in checkpoint order (the matrix group last, with adamw only).
  std::vector<AdamT*> adams() {
    std::vector<AdamT*> v{&embed_, &head_, &scalar_};
    if (matrix_adam_) v.push_back(&*matrix_adam_);
    return v;
  }
  std::vector<const AdamT*> adams() const {
    std::vector<const AdamT*> v{&embed_, &head_, &scalar_};
    if (matrix_adam_) v.push_back(&*matrix_adam_);
    return v;
  }

  TrainConfig cfg_;
  RunLog& log_;
  Data data_;
  Model model_;
  using MuonT = decltype(make_muon_for(std::declval<Model&>(), MuonOptions{}));
  std::optional<MuonT> muon_;
  AdamT embed_, head_, scalar_;
  std::optional<AdamT> matrix_adam_;
  static constexpr bool kTokenWeights = requires(Model m, std::span<const T> w) { m.set_token_weights(w); };
  std::optional<TokenRecycler> recycler_;
  std::function<void(long long, double)> on_step_;
  long long step_ = 0;
  double train_ms_ = 0;
};

}  // namespace pgolf
