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
// buffers and counters, step, clock, data position), so a resumed run continues exactly; with
// checkpoint_every and an out_dir, one is written every N steps (atomically, outside the clock), at
// the last step before the end phase (late replay, self-distillation) if that step had none, and
// every N optimizer steps of that phase (replay micro-batches, then distillation steps; with the
// phase's position, the replay epoch's loss sum and, once distillation has begun, its frozen
// teacher): a run killed during the phase resumes where it stopped, bit for bit.
//
// The records' recipe (TrainConfig: ema_decay, swa_every, average, qat_threshold): an EMA and/or SWA
// of the weights is kept beside them (in the backend's memory) and the selected average is loaded
// into the model before the final validation, so that validation, the export and the artifact use
// it; checkpoints keep the raw weights plus the EMA/SWA state and the QAT switch step, so a resume
// continues the same trajectory. Late QAT fake-quantises the Muon matrices for each step's forward
// and backward once the LR multiplier reaches qat_threshold (train/qat.hpp).
//
// Data parallel (dist/communicator.hpp; the communicator is dist::world() when the Trainer is
// built): each of the N ranks takes batch_rows / N sequences of every step, micro-batched as a
// single process would micro-batch them, and reads them as the reference's DistributedTokenLoader
// does (one contiguous chunk of N * (local + 1) tokens per micro-step, rank r taking slice r), so
// the N ranks together see exactly the micro-batches one process sees. Each backward is scaled by
// 1 / (accumulation steps x N); after the last micro-batch the whole gradient buffer is summed over
// the ranks (one all-reduce), which gives the single process's mean gradient up to the order of the
// float additions (not bit for bit: one process accumulates its micro-batches inside the backward's
// products, the ranks add their finished sums; docs/distributed.md). The logged loss is the global
// mean; evaluation splits the validation sequences and sums loss, token and byte counts in double;
// the schedule and the wall-clock stop use rank 0's clock, so every rank takes the same decisions;
// only rank 0 writes (RunLog, checkpoints). Every rank holds the same weights after every step.
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
#include "pgolf/dist/communicator.hpp"
#include "pgolf/nn/param_table.hpp"
#include "pgolf/ops/attention_path.hpp"
#include "pgolf/optim/adam.hpp"
#include "pgolf/optim/clip.hpp"
#include "pgolf/optim/muon.hpp"
#include "pgolf/train/backend_policy.hpp"
#include "pgolf/optim/schedule.hpp"
#include "pgolf/train/checkpoint.hpp"
#include "pgolf/train/checkpoint_dir.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/evaluate.hpp"
#include "pgolf/train/fineweb_data.hpp"
#include "pgolf/train/replay_buffer.hpp"
#include "pgolf/train/run_log.hpp"
#include "pgolf/train/token_recycling.hpp"

namespace pgolf {

// What the Trainer needs from a model (Gpt and GptCuda satisfy it; so will every other family).
// Its backend (M::Backend) says how to step and copy its parameters (train/backend_policy.hpp).
template <class M>
concept TrainableModel = requires(M m, std::span<const std::int32_t> ids, std::uint64_t seed) {
  typename M::Scalar;
  typename M::Backend;
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
  using Policy = TrainerBackend<typename Model::Backend>;
  using MuonWire = typename Policy::MuonWire;  // a split Muon step's updates between ranks
  using Metrics = typename Data::Metrics;

  struct TrainRecord {
    long long step;
    double train_loss, train_ms, lr_scale;
  };
  struct CommTime {  // milliseconds in collectives (gradient all-reduce, sharded Muon's) and the steps
    double grad_ms = 0, muon_ms = 0;
    long long steps = 0;
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
    std::vector<CommTime> comm;  // data parallel: each rank's communication time (empty on one process)
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
      : cfg_(validated(std::move(config), comm_->size())),
        log_(log),
        data_(make(cfg_)),
        model_(cfg_.micro_batch_rows(comm_->size()), cfg_.train_seq_len),
        embed_(Policy::adam(model_, OptimGroup::adam_embed, adam_options())),
        head_(Policy::adam(model_, OptimGroup::adam_head, adam_options())),
        scalar_(Policy::adam(model_, OptimGroup::adam_scalar, adam_options())) {
    // The matrix group: Muon, or Adam(W) like every other group.
    if (cfg_.optimizer == OptimizerKind::adamw)
      matrix_adam_.emplace(Policy::adam(model_, OptimGroup::muon_matrix, adam_options()));
    else
      muon_.emplace(Policy::muon(model_, muon_options()));
    // Data parallel: each rank orthogonalises its share of the Muon matrices (MuonShard in
    // optim/muon.hpp; optim/cuda/muon.cuh on the GPU).
    if (muon_ && cfg_.muon_shard && comm_->size() > 1)
      muon_shard_.emplace(MuonShard<MuonWire>{comm_->rank(), comm_->size(), [this](std::span<MuonWire> x) {
        const auto tc = Clock::now();
        Policy::all_reduce(x, *comm_);
        comm_time_.muon_ms += ms_since(tc);
      }});
    if (cfg_.token_recycling > 0) {
      PGOLF_CHECK(kTokenWeights, "token_recycling needs a model that takes per-token loss weights "
                                 "(set_token_weights, e.g. Prism); this model has none");
      recycler_.emplace(cfg_.token_recycling);
    }
    if constexpr (kPhases > 1) {
      loop_at_ = cfg_.loop_enable_at < 0 ? kDefaultLoopEnableAt : cfg_.loop_enable_at;
    } else {
      PGOLF_CHECK(cfg_.loop_enable_at < 0, "loop_enable_at is ", cfg_.loop_enable_at,
                  " but this model has a single depth schedule (GptSpec.depth.looped is empty): nothing to switch on");
    }
    PGOLF_CHECK(kSliding || cfg_.eval_stride == 0, "eval_stride is ", cfg_.eval_stride,
                " but this data source has no sliding-window evaluation (FineWebData has it); use eval_stride 0");
    if (comm_->size() > 1) {
      if constexpr (requires { data_.distribute(*comm_); }) data_.distribute(*comm_);
      else PGOLF_FAIL("this data source cannot be split over ", comm_->size(), " ranks (it has no distribute())");
      PGOLF_CHECK(!recycler_, "token_recycling keeps per-process state: not supported in data-parallel runs");
    }
    model_.init(cfg_.seed);  // the same seed on every rank: the same weights (counter-based draws)
    // The records' recipe: the EMA starts from the initial weights, the SWA sum from zero.
    if (cfg_.ema_decay > 0) ema_.emplace(Policy::mirror(model_));
    if (cfg_.swa_every > 0) swa_.emplace(Policy::zeros(model_));
    if (cfg_.qat_threshold > 0) fq_.emplace(Policy::fake_quant(model_));
    if (cfg_.replay_batches > 0) replay_.emplace(std::size_t(cfg_.replay_batches));
    PGOLF_CHECK(kDistill || cfg_.distill_steps == 0, "distill_steps is ", cfg_.distill_steps,
                ": self-distillation needs a model whose loss takes a teacher's logits (distill_from: every model "
                "on the CPU; on CUDA, a GPT with the symmetric softcap); this one has none");
  }

 public:

  Model& model() { return model_; }
  const TrainConfig& config() const { return cfg_; }
  Data& data() { return data_; }
  const Data& data() const { return data_; }
  long long step() const { return step_; }
  // The recipe's state: which weights the model holds ("raw" until run() ends with an average), the
  // SWA count, and the step late QAT switched on at (-1: not on).
  const std::string& weights() const { return weights_; }
  long long swa_count() const { return swa_count_; }
  long long qat_on_step() const { return qat_on_step_; }
  // The end phase (late replay, self-distillation) is configured and has not run on these weights:
  // a checkpoint at the last step written before it resumes into it.
  bool post_train_pending() const { return cfg_.has_post_train() && !post_trained_; }
  // The end phase's optimizer steps taken (late replay's micro-batches, then distillation's steps);
  // 0 before it starts and once it has run.
  long long end_steps() const { return end_steps_; }
  // The EMA and SWA sum in the table layout (empty when off), for tests and tools.
  std::vector<T> ema_host() { return ema_ ? Policy::mirror_to_host(model_, *ema_) : std::vector<T>{}; }
  std::vector<T> swa_sum_host() { return swa_ ? Policy::mirror_to_host(model_, *swa_) : std::vector<T>{}; }
  double train_ms() const { return train_ms_; }

  Metrics validate() { return data_.evaluate(model_); }
  // The final scores (the end of training, the artifact's round trip, `eval`): sliding-window
  // evaluation with window seq_len and stride eval_stride when it is > 0, else the standard one.
  // Validations during training stay standard: sliding costs seq_len / eval_stride times as much.
  bool sliding_eval() const { return cfg_.eval_stride > 0; }
  // A window other than train_seq_len needs a model of that length: a second one holding the same
  // weights, as many tokens per batch as the training micro-batch, alive for this evaluation only.
  Metrics validate_final() {
    if constexpr (kSliding)
      if (cfg_.eval_stride > 0) {
        const int L = cfg_.eval_window();
        if (L == model_.seq_len()) return data_.evaluate_sliding(model_, cfg_.eval_stride);
        const long long tokens = (long long)model_.batch() * model_.seq_len();
        Model wide(int(std::max<long long>(1, tokens / L)), L);
        Policy::params_from_host(wide, std::span<const T>(Policy::params_to_host(model_)));
        return data_.evaluate_sliding(wide, cfg_.eval_stride);
      }
    return validate();
  }

  // Called after every optimizer step with the steps taken so far and that step's training loss;
  // the model then holds the updated weights (golden replays and tools follow the trajectory).
  void on_step(std::function<void(long long step, double train_loss)> f) { on_step_ = std::move(f); }

  Result run() {
    const auto& c = cfg_;
    const int world = comm_->size();
    const int accum = c.grad_accum_steps(world);
    const double micro_div = double(accum) * world;  // summed over the ranks: the global mean
    // Replay and distillation inside the budget: the main loop's cap leaves post_train_seconds.
    const double cap_ms = (c.max_wallclock_seconds - c.post_train_seconds) * 1000.0;
    const WarmdownSchedule warmdown{c.iterations, c.warmdown_iters, cap_ms, c.warmdown_fraction, c.min_lr_scale};
    const WarmupCosineSchedule cosine{c.iterations, c.warmup_steps()};
    const MomentumWarmup warmup = momentum_warmup();

    Result res;
    long long stop_after = -1;
    auto t0 = Clock::now();
    for (;;) {
      sync_phase(clock_ms(t0));
      const bool last = step_ >= c.iterations || (stop_after >= 0 && step_ >= stop_after);
      if (last || (c.val_loss_every > 0 && step_ % c.val_loss_every == 0)) {
        train_ms_ = clock_ms(t0);
        if (last) {
          // A run killed during the end phase resumes from the last step's checkpoint, written
          // first (outside the clock, as train_ms_ was just taken) unless the periodic one was.
          if (post_train_pending() && c.checkpoint_every > 0 && !c.out_dir.empty() && checkpointed_step_ != step_)
            write_periodic_checkpoint();
          post_train();  // late replay and self-distillation, when on
          if (c.has_post_train()) post_trained_ = true;
          apply_average();  // the final validation (and the export) score the averaged weights
        }
        const Metrics m = validate();
        log_.print(format("step:%lld/%lld %s train_time:%.0fms step_avg:%.2fms", step_, c.iterations,
                          data_.describe(m).c_str(), train_ms_, train_ms_ / double(std::max(step_, 1LL))));
        JsonLine line;
        line.add("event", "val").add("step", step_).add("weights", weights_);
        data_.add_metrics(line, m);
        log_.metric(line.add("train_time_ms", train_ms_).str());
        res.val.push_back({step_, m.val_loss(), m.val_bpb(), train_ms_});
        if (last && sliding_eval()) log_final_sliding();
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
                                                                      : warmdown.multiplier(step_, clock_ms(t0));
      if (fq_ && qat_on_step_ < 0 && scale <= c.qat_threshold) {
        qat_on_step_ = step_;
        log_.print(format("qat:on step:%lld bits:%d", step_, c.qat_bits));
        log_.metric(JsonLine().add("event", "qat").add("step", step_).add("bits", c.qat_bits).str());
      }
      // Late QAT: this step's forwards and backwards read the fake-quantised matrices; the masters
      // are restored before the optimizer applies that gradient to them (straight-through).
      const bool qat = fq_ && qat_on_step_ >= 0;
      if (qat) fq_->apply(model_.params(), c.qat_bits);
      model_.zero_grad();
      double loss = 0;
      for (int a = 0; a < accum; ++a) {
        const data::Batch b = data_.next_batch(c, accum);
        if (replay_ && scale < c.replay_threshold) replay_->push(b.x, b.y);
        loss += model_.forward(b.x, b.y) / micro_div;
        if constexpr (kTokenWeights) {
          if (recycler_) {
            const auto losses = std::span<const T>(model_.row_losses());
            model_.set_token_weights(std::span<const T>(recycler_->weights(losses, std::span<const std::int32_t>(b.y))));
            model_.backward(1.0 / micro_div);
            recycler_->update(losses, std::span<const std::int32_t>(b.y));
            continue;
          }
        }
        model_.backward(1.0 / micro_div);
      }
      if (qat) fq_->restore(model_.params());
      if (muon_) muon_->set_momentum(warmup.at(step_));
      loss = reduce_and_step(loss, scale, [&] { return format("training diverged at step %lld/%lld", step_ + 1, c.iterations); });
      ++step_;
      post_trained_ = false;
      reset_end_phase();  // a resumed checkpoint inside an end phase, trained on: that phase is dropped
      if (swa_ && step_ % c.swa_every == 0 && scale < c.swa_threshold) {
        if (ema_) Policy::accumulate(*swa_, *ema_);  // swa_of_ema (validate() allows the EMA only then)
        else Policy::accumulate_params(*swa_, model_);
        ++swa_count_;
      }

      const double approx_ms = clock_ms(t0);
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
      if (c.checkpoint_every > 0 && !c.out_dir.empty() && step_ % c.checkpoint_every == 0) {
        train_ms_ = clock_ms(t0);  // like validation, the write is not training time
        write_periodic_checkpoint();
        t0 = Clock::now();
      }
      if (stop_after < 0 && cap_ms > 0 && approx_ms >= cap_ms) stop_after = step_;
    }
    log_.finish_progress();
    res.steps = step_;
    res.train_ms = train_ms_;
    res.comm = gather_comm_time();
    return res;
  }

  // Restarts the averages from the weights the model holds now (the EMA a copy of them, the SWA
  // empty), as a run starts them from its initial weights: `import` calls it after loading a state
  // dict, so its checkpoint's EMA is the imported weights, not the seed's.
  void reset_averages() {
    if (ema_) ema_.emplace(Policy::mirror(model_));
    if (swa_) swa_.emplace(Policy::zeros(model_));
    swa_count_ = 0;
  }

  // Full training state. Optimizer buffers are listed in a fixed order after the parameters.
  Checkpoint<T> checkpoint() const {
    Checkpoint<T> ck;
    ck.fingerprint = table_fingerprint(Model::param_table);
    ck.step = step_;
    ck.train_ms = train_ms_;
    ck.seed = cfg_.seed;
    std::tie(ck.data_file, ck.data_pos) = data_.position();
    ck.tensors.push_back(raw_ ? *raw_ : Policy::params_to_host(model_));  // the raw weights, not the average
    ck.tensors.push_back(muon_ ? Policy::state_to_host(muon_->momentum_buffer()) : std::vector<T>{});  // empty: adamw
    for (const AdamT* a : adams()) {
      ck.tensors.push_back(Policy::state_to_host(a->first_moment()));
      ck.tensors.push_back(Policy::state_to_host(a->second_moment()));
      ck.counters.push_back(a->steps_taken());
    }
    if (recycler_) {
      const auto st = recycler_->state();
      ck.tensors.emplace_back(st.begin(), st.end());
    }
    if (ema_) ck.tensors.push_back(Policy::mirror_to_host(model_, *ema_));
    if (swa_) {
      ck.tensors.push_back(Policy::mirror_to_host(model_, *swa_));
      ck.counters.push_back(swa_count_);
    }
    if (fq_) ck.counters.push_back(qat_on_step_);
    if (replay_) ck.tensors.push_back(replay_->state<T>());
    if (!teacher_.empty()) ck.tensors.push_back(teacher_);
    ck.state = checkpoint_state();
    return ck;
  }

  // What this trainer's checkpoints hold besides the parameters and the optimizer state.
  CheckpointState checkpoint_state() const {
    CheckpointState s;
    s.adam_groups = std::uint32_t(adams().size());
    s.recycler = recycler_.has_value(), s.ema = ema_.has_value(), s.swa = swa_.has_value();
    s.qat = fq_.has_value(), s.replay = replay_.has_value();
    s.post_trained = post_trained_;
    s.end_steps = end_steps_, s.end_loss = end_loss_, s.end_ms = end_ms_;
    s.teacher = !teacher_.empty();
    s.ema_decay = ema_ ? cfg_.ema_decay : 0.0;
    s.average = cfg_.average_kind();
    return s;
  }

  void restore(const Checkpoint<T>& ck) {
    auto list = adams();
    const CheckpointState have = checkpoint_state();  // what this trainer's own checkpoints hold
    if (ck.state) {  // version 2 says what it holds: name the first switch that differs
      const CheckpointState& got = *ck.state;
      PGOLF_CHECK(got.adam_groups == have.adam_groups, "checkpoint does not hold this trainer's state: its matrices "
                  "were trained with ", got.adam_groups == 4 ? "adamw" : "muon", ", this run uses ",
                  have.adam_groups == 4 ? "adamw" : "muon", " (optimizer must be as in the run that wrote it)");
      const char* differs = got.recycler != have.recycler       ? "token_recycling"
                            : got.ema != have.ema               ? "ema_decay"
                            : got.swa != have.swa               ? "swa_every"
                            : got.qat != have.qat               ? "qat_threshold"
                            : got.replay != have.replay         ? "replay_batches"
                                                                : nullptr;
      PGOLF_CHECK(!differs, "checkpoint does not hold this trainer's state: ", differs,
                  " is on in one and off in the other (the checkpoint: EMA ", got.ema ? "on" : "off", ", SWA ",
                  got.swa ? "on" : "off", ", QAT ", got.qat ? "on" : "off", ", replay ", got.replay ? "on" : "off",
                  "; ema_decay, swa_every, qat_threshold and replay_batches must be on or off as in the run that wrote it)");
    }
    const std::size_t n = list.size();
    const bool teacher = ck.state && ck.state->teacher;  // held inside distillation only
    PGOLF_CHECK(ck.tensors.size() == have.tensor_count() - have.teacher + teacher && ck.counters.size() == have.counter_count(),
                "checkpoint does not hold this trainer's state (", ck.tensors.size(), " tensors, ", ck.counters.size(),
                " counters; expected ", have.tensor_count(), " and ", have.counter_count(),
                "; ema_decay, swa_every, qat_threshold and replay_batches must be on or off as in the run that wrote it)");
    std::size_t at = 2 + 2 * n, ctr = n;  // the recycler, EMA and SWA follow the optimizer state
    if (recycler_) {
      const auto& st = ck.tensors[at++];
      recycler_->set_state(std::vector<double>(st.begin(), st.end()));
    }
    if (ema_) Policy::mirror_from_host(model_, *ema_, ck.tensors[at++], "EMA");
    if (swa_) {
      Policy::mirror_from_host(model_, *swa_, ck.tensors[at++], "SWA sum");
      swa_count_ = ck.counters[ctr++];
      PGOLF_CHECK(swa_count_ >= 0, "checkpoint SWA count is ", swa_count_);
    }
    if (fq_) qat_on_step_ = ck.counters[ctr++];
    if (replay_) replay_->set_state(ck.tensors[at++]);
    reset_end_phase();
    if (ck.state && ck.state->in_end_phase() && ck.step == cfg_.iterations) {  // else the phase is dropped
      const CheckpointState& st = *ck.state;
      const long long planned = end_phase_steps();
      PGOLF_CHECK(st.end_steps <= planned && (!teacher || st.end_steps > replay_steps()), "checkpoint is ",
                  st.end_steps, " steps into its end phase", teacher ? " (in distillation)" : "", "; this run's end phase has ",
                  replay_steps(), " replay and ", cfg_.distill_steps, " distillation steps (replay_epochs, replay_batches "
                  "and distill_steps must be as in the run that wrote it)");
      end_steps_ = st.end_steps, end_loss_ = st.end_loss, end_ms_ = st.end_ms;
      if (teacher) {
        teacher_ = ck.tensors[at++];
        PGOLF_CHECK(teacher_.size() == Model::num_params, "checkpoint's distillation teacher holds ", teacher_.size(),
                    " values, expected ", Model::num_params);
      }
    }
    raw_.reset();
    weights_ = "raw";
    Policy::params_from_host(model_, std::span<const T>(ck.tensors[0]));
    if (muon_) Policy::state_from_host(muon_->momentum_buffer(), ck.tensors[1], "Muon momentum");
    else PGOLF_CHECK(ck.tensors[1].empty(), "checkpoint holds Muon momentum; this run uses AdamW for the matrices");
    for (std::size_t k = 0; k < n; ++k) {
      Policy::state_from_host(list[k]->first_moment(), ck.tensors[2 + 2 * k], "Adam first moment");
      Policy::state_from_host(list[k]->second_moment(), ck.tensors[3 + 2 * k], "Adam second moment");
      list[k]->set_steps_taken(ck.counters[k]);
    }
    step_ = ck.step;
    post_trained_ = ck.state && ck.state->post_trained;
    checkpointed_step_ = ck.step;
    train_ms_ = ck.train_ms;
    data_.seek({ck.data_file, ck.data_pos});
    sync_phase(train_ms_);
  }

  void save_checkpoint(const std::filesystem::path& path) const {
    if (!comm_->is_root()) return;  // data parallel: rank 0 writes; every rank holds the same state
    write_file_bytes(path, encode_checkpoint(checkpoint()));
  }

  // The run folder's checkpoints (out_dir/checkpoints every checkpoint_every steps, the newest
  // keep_checkpoints kept; train/checkpoint_dir.hpp).
  CheckpointDir checkpoint_dir() const { return CheckpointDir(cfg_.out_dir, cfg_.keep_checkpoints); }

  // Loads the full state from a checkpoint file (resume), or only the weights when params_only:
  // `weights` picks which (load_weights).
  // data_position (with params_only): the training data also continues where the run stopped, so an
  // export calibrates GPTQ on the micro-batches the run's own export read (the same artifact).
  void load_checkpoint(const std::filesystem::path& path, bool params_only = false, const std::string& weights = "auto",
                       bool data_position = false) {
    const auto ck = decode_checkpoint<T>(read_file_bytes(path), table_fingerprint(Model::param_table), path.string());
    if (!params_only) return restore(ck);
    load_weights(ck, weights, path.string());
    if (data_position) {
      try {
        data_.seek({ck.data_file, ck.data_pos});
      } catch (const std::exception& e) {
        PGOLF_FAIL(path.string(), ": its run stopped at a training-data position this data does not have (",
                   e.what(), "); pass the run's --data-path");
      }
    }
  }

  // Only the weights of a checkpoint (eval, export): auto = the ones its run exported (the average
  // it selected, with apply_average's fallbacks; a version-1 file records none, so its raw
  // weights), raw = tensors[0], ema = the EMA, swa = the SWA sum / count (of the EMA when the run
  // kept both: swa_of_ema). Logs which; returns raw, ema, swa or swa_of_ema.
  std::string load_weights(const Checkpoint<T>& ck, const std::string& choice, const std::string& what) {
    PGOLF_CHECK(choice == "auto" || choice == "raw" || choice == "ema" || choice == "swa",
                "weights must be auto, raw, ema or swa, got '", choice, "'");
    PGOLF_CHECK(ck.tensors[0].size() == Model::num_params, what, " holds ", ck.tensors[0].size(),
                " parameters, expected ", Model::num_params);
    const CheckpointState* st = ck.state ? &*ck.state : nullptr;
    PGOLF_CHECK(st || choice == "auto" || choice == "raw", what, " is a version-1 checkpoint, which does not record "
                "its EMA/SWA state: --weights ", choice, " cannot be read from it (use auto or raw)");
    const long long count = st && st->swa ? ck.counters[st->swa_counter()] : 0;
    const std::string source = choice == "auto" ? "from the checkpoint" : "--weights " + choice;
    std::string w = "raw", note;
    if (choice == "ema") {
      PGOLF_CHECK(st->ema, what, " holds no EMA (its run had ema_decay 0); --weights ema cannot be loaded");
      w = "ema";
    } else if (choice == "swa") {
      PGOLF_CHECK(st->swa, what, " holds no SWA (its run had swa_every 0); --weights swa cannot be loaded");
      PGOLF_CHECK(count > 0, what, "'s SWA collected nothing (no swa_every step had the LR multiplier under "
                  "swa_threshold); --weights swa cannot be loaded");
      w = st->ema ? "swa_of_ema" : "swa";  // the trainer sums the EMA whenever it keeps one
    } else if (choice == "auto" && st) {
      w = averaged_weights(st->average, count);
      if (w != st->average && st->average != "none") note = " (swa collected nothing)";
    } else if (choice == "auto") {
      note = " (a version-1 checkpoint records no average)";
    }
    if (w == "raw") {
      Policy::params_from_host(model_, std::span<const T>(ck.tensors[0]));
      log_.print(format("weights:raw%s (%s)", note.c_str(), source.c_str()));
    } else if (w == "ema") {
      Policy::params_from_host(model_, std::span<const T>(ck.tensors[st->ema_tensor()]));
      log_.print(format("weights:ema decay:%g%s (%s)", st->ema_decay, note.c_str(), source.c_str()));
    } else {
      Mirror sum = Policy::zeros(model_);
      Policy::mirror_from_host(model_, sum, ck.tensors[st->swa_tensor()], "SWA sum");
      Policy::load_average(model_, sum, count);
      log_.print(format("weights:%s count:%lld%s (%s)", w.c_str(), count,
                        w == "swa_of_ema" ? format(" ema_decay:%g", st->ema_decay).c_str() : "", source.c_str()));
    }
    raw_.reset();
    weights_ = w;
    use_final_phase();
    return w;
  }

  // Depth phase of a model with two schedules: the loop-on schedule from loop_enable_at of training
  // (a fraction of the steps, or of the wall-clock cap when that comes first).
  int phase_for(long long step, double elapsed_ms) const {
    if constexpr (kPhases > 1) {
      const double cap_ms = cfg_.max_wallclock_seconds * 1000.0;
      double frac = cfg_.iterations > 0 ? double(step) / double(cfg_.iterations) : 1.0;
      if (cap_ms > 0) frac = std::max(frac, elapsed_ms / cap_ms);
      return frac >= loop_at_ ? 1 : 0;
    } else {
      return 0;
    }
  }
  // A trained model (an evaluated checkpoint or artifact) runs the schedule it finished with.
  void use_final_phase() {
    if constexpr (kPhases > 1) model_.set_phase(phase_for(cfg_.iterations, cfg_.max_wallclock_seconds * 1000.0));
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  }
  // Also makes the process-wide choices the models read when they are built.
  static TrainConfig validated(TrainConfig c, int world) {
    c.validate();
    c.world_rows_check(world);
    set_attention_deterministic(c.deterministic);
    return c;
  }
  // Training time so far, by rank 0's clock on every rank (the same schedule and stop decisions).
  double clock_ms(Clock::time_point t0) const { return comm_->broadcast_value(train_ms_ + ms_since(t0)); }

  // After the backward of a step: the gradients summed over the ranks, a non-finite loss stopped
  // (`where` says which step), the clip, every group stepped at its base LR x lr_scale (Muon at the
  // momentum last set), and the EMA updated. Returns the global mean loss.
  template <class Where>
  double reduce_and_step(double loss, double lr_scale, Where&& where) {
    const auto& c = cfg_;
    if (comm_->size() > 1) {  // after the last micro-batch: one all-reduce of the whole buffer
      Policy::synchronize();  // the backward's tail is compute, not communication
      const auto tc = Clock::now();
      Policy::all_reduce_grads(model_, *comm_);
      loss = comm_->sum(loss);
      comm_time_.grad_ms += ms_since(tc);
      ++comm_time_.steps;
    }
    if (!std::isfinite(loss)) {
      log_.finish_progress();
      PGOLF_FAIL(where(), ": train_loss is ", loss, " (lower the learning rates or enable --grad-clip-norm)");
    }
    if (c.grad_clip_norm > 0) Policy::clip(model_, c.grad_clip_norm);
    if (matrix_adam_) matrix_adam_->step(model_.params(), model_.grads(), c.matrix_lr * lr_scale);
    else if (muon_shard_) muon_->step(model_.params(), model_.grads(), c.matrix_lr * lr_scale, *muon_shard_);
    else muon_->step(model_.params(), model_.grads(), c.matrix_lr * lr_scale);
    embed_.step(model_.params(), model_.grads(), (head_.empty() ? c.tied_embed_lr : c.embed_lr) * lr_scale);
    head_.step(model_.params(), model_.grads(), c.head_lr * lr_scale);
    scalar_.step(model_.params(), model_.grads(), c.scalar_lr * lr_scale);
    if (ema_) Policy::ema_update(*ema_, model_, c.ema_decay);
    return loss;
  }

  void write_periodic_checkpoint() {
    if (comm_->is_root()) {  // data parallel: rank 0 writes; every rank holds the same state
      const auto path = checkpoint_dir().write_periodic(step_, encode_checkpoint(checkpoint()), end_steps_);
      JsonLine line;
      line.add("event", "checkpoint").add("step", step_);
      if (end_steps_ > 0) line.add("end_steps", end_steps_);
      log_.metric(line.add("path", path.string()).str());
    }
    checkpointed_step_ = step_;
  }

  // The end phase's length in optimizer steps: replay's (buffered micro-batches x epochs), then
  // distillation's. Its position, end_steps_, counts through both.
  long long replay_steps() const { return replay_ ? (long long)replay_->size() * cfg_.replay_epochs : 0; }
  long long end_phase_steps() const { return replay_steps() + cfg_.distill_steps; }
  void reset_end_phase() {
    end_steps_ = 0, end_loss_ = 0, end_ms_ = 0;
    teacher_.clear();
  }

  // Late replay, then self-distillation (TrainConfig; TECHNIQUES.md 7.5, 7.6), after the main loop
  // and before the average is loaded. Outside the training clock unless post_train_seconds > 0:
  // then their time counts and they stop at the wall-clock cap.
  void post_train() {
    const auto& c = cfg_;
    if (!replay_ && c.distill_steps == 0) return;
    const bool inside = c.post_train_seconds > 0;
    const double cap_ms = c.max_wallclock_seconds * 1000.0;
    // The phase's time: end_ms_ (earlier processes, and this one up to its last checkpoint) plus
    // the time since t. A checkpoint's write is not phase time.
    auto t = Clock::now();
    auto phase_ms = [&] { return end_ms_ + ms_since(t); };
    auto out_of_time = [&] { return inside && comm_->broadcast_value(train_ms_ + phase_ms()) >= cap_ms; };
    const bool periodic = c.checkpoint_every > 0 && !c.out_dir.empty();
    auto after_step = [&] {  // one optimizer step of the phase taken
      ++end_steps_;
      if (!periodic || end_steps_ % c.checkpoint_every != 0) return;
      end_ms_ = phase_ms();
      write_periodic_checkpoint();
      t = Clock::now();
    };
    auto log_done = [&](const char* phase, long long steps, long long planned, double ms, long long from) {
      log_.print(format("%s:done steps:%lld/%lld time:%.0fms %s%s", phase, steps, planned, ms,
                        inside ? "inside_budget" : "outside_budget",
                        from > 0 ? format(" (resumed after %lld)", from).c_str() : ""));
      JsonLine line;
      line.add("event", phase).add("steps", steps).add("planned", planned).add("time_ms", ms).add("inside_budget", inside);
      if (from > 0) line.add("resumed_after", from);
      log_.metric(line.str());
    };
    // Late QAT stays as it was: on once switched on. Muon's momentum too, set here from the last
    // step rather than left from it: a run resumed at the last step has taken no step.
    const bool qat = fq_ && qat_on_step_ >= 0;
    if (muon_ && step_ > 0) muon_->set_momentum(momentum_warmup().at(step_ - 1));
    const long long size = replay_ ? (long long)replay_->size() : 0, planned_replay = replay_steps();
    if (replay_ && (planned_replay == 0 || end_steps_ < planned_replay)) {
      const auto t1 = Clock::now();
      const long long from = end_steps_;
      if (size == 0) log_.print("replay: nothing buffered (no step had the LR multiplier under replay_threshold)");
      const double w = comm_->size();
      // A resumed phase starts inside an epoch: the steps before it and their loss sum are restored.
      for (long long e = end_steps_ / std::max(size, 1LL); e < c.replay_epochs && size > 0 && !out_of_time(); ++e) {
        if (end_steps_ == e * size) end_loss_ = 0;  // the epoch's first step (a checkpoint may end the one before)
        for (long long i = end_steps_ - e * size; i < size && !out_of_time(); ++i) {
          const auto& [x, y] = replay_->at(std::size_t(i));
          if (qat) fq_->apply(model_.params(), c.qat_bits);
          model_.zero_grad();
          double loss = model_.forward(x, y) / w;
          model_.backward(1.0 / w);
          if (qat) fq_->restore(model_.params());
          end_loss_ += reduce_and_step(loss, c.replay_lr_scale,
                                       [&] { return format("replay diverged at epoch %lld, micro-batch %lld", e + 1, i + 1); });
          after_step();
        }
        const long long n = end_steps_ - e * size;  // this epoch's steps (fewer when out of time)
        log_.print(format("replay:epoch %lld/%d loss:%.4f", e + 1, c.replay_epochs, end_loss_ / double(std::max(n, 1LL))));
      }
      log_done("replay", end_steps_, planned_replay, ms_since(t1), from);
    }
    if (c.distill_steps > 0) {
      if constexpr (kDistill) {
        const auto t1 = Clock::now();
        // Steps taken before a resume: a replay cut short by the clock leaves none to take here.
        const long long from = std::max(0LL, end_steps_ - planned_replay);
        // The teacher: a frozen model holding the EMA as it is when distillation starts (restored
        // from the checkpoint when resumed inside it: the EMA has moved on since).
        if (teacher_.empty()) teacher_ = Policy::mirror_to_host(model_, *ema_);
        Model teacher(cfg_.micro_batch_rows(comm_->size()), c.train_seq_len);
        Policy::params_from_host(teacher, std::span<const T>(teacher_));
        const ops::cpu::DistillOptions opt{.temperature = c.distill_temperature, .alpha = c.distill_alpha,
                                           .per_sequence = c.distill_per_sequence};
        const int accum = c.grad_accum_steps(comm_->size());
        const double micro_div = double(accum) * comm_->size();
        long long k = from;
        for (; k < c.distill_steps && !out_of_time(); ++k) {
          if (qat) fq_->apply(model_.params(), c.qat_bits);
          model_.zero_grad();
          double loss = 0;
          for (int a = 0; a < accum; ++a) {
            const data::Batch b = data_.next_batch(c, accum);
            teacher.forward(b.x, b.y);
            model_.distill_from(teacher, opt);
            loss += model_.forward(b.x, b.y) / micro_div;
            model_.backward(1.0 / micro_div);
            model_.clear_teacher();
          }
          if (qat) fq_->restore(model_.params());
          loss = reduce_and_step(loss, c.distill_lr_scale,
                                 [&] { return format("distillation diverged at step %lld/%lld", k + 1, c.distill_steps); });
          if (c.train_log_every > 0 && (k < 3 || (k + 1) % c.train_log_every == 0 || k + 1 == c.distill_steps))
            log_.print(format("distill:step %lld/%lld loss:%.4f", k + 1, c.distill_steps, loss));
          after_step();
        }
        log_done("distill", k, c.distill_steps, ms_since(t1), from);
      }
    }
    if (inside) train_ms_ = comm_->broadcast_value(train_ms_ + phase_ms());
    reset_end_phase();
  }
  // Every rank's communication time, on every rank (one all-reduce); rank 0 logs it. The time a
  // rank spends in the gradient all-reduce includes its wait for the slowest rank to arrive, so
  // the rank that waits least bounds what the transfer itself costs: the most that overlapping the
  // all-reduce with the backward could hide (docs/distributed.md).
  std::vector<CommTime> gather_comm_time() {
    const int n = comm_->size();
    if (n == 1) return {};
    std::vector<double> v(3 * std::size_t(n), 0.0);
    const std::size_t r = std::size_t(comm_->rank());
    v[3 * r] = comm_time_.grad_ms, v[3 * r + 1] = comm_time_.muon_ms, v[3 * r + 2] = double(comm_time_.steps);
    comm_->all_reduce_sum(std::span<double>(v));
    std::vector<CommTime> all(std::size_t(n), CommTime{});
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = {v[3 * i], v[3 * i + 1], (long long)v[3 * i + 2]};
    if (comm_->is_root() && all[0].steps > 0) {
      auto per_step = [&](double CommTime::*f, auto pick) {
        double x = all[0].*f;
        for (const auto& a : all) x = pick(x, a.*f);
        return x / double(all[0].steps);
      };
      constexpr auto lo = [](double a, double b) { return std::min(a, b); };
      constexpr auto hi = [](double a, double b) { return std::max(a, b); };
      const double step_ms = train_ms_ / double(std::max(step_, 1LL));
      log_.print(format("comm: ranks:%d steps:%lld grad_allreduce_ms_per_step min:%.2f max:%.2f "
                        "muon_allreduce_ms_per_step min:%.2f max:%.2f step_avg:%.2fms",
                        n, all[0].steps, per_step(&CommTime::grad_ms, lo), per_step(&CommTime::grad_ms, hi),
                        per_step(&CommTime::muon_ms, lo), per_step(&CommTime::muon_ms, hi), step_ms));
      JsonLine line;
      line.add("event", "comm").add("ranks", n).add("steps", all[0].steps);
      for (std::size_t i = 0; i < all.size(); ++i)
        line.add(format("grad_allreduce_ms_rank%zu", i), all[i].grad_ms).add(format("muon_allreduce_ms_rank%zu", i), all[i].muon_ms);
      log_.metric(line.str());
    }
    return all;
  }
  MomentumWarmup momentum_warmup() const {
    return MomentumWarmup{cfg_.muon_momentum_warmup_start, cfg_.muon_momentum, cfg_.muon_momentum_warmup_steps};
  }
  AdamOptions adam_options() const {
    return AdamOptions{.beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.adam_eps, .weight_decay = cfg_.weight_decay};
  }
  MuonOptions muon_options() const {
    return MuonOptions{.momentum = cfg_.muon_momentum, .ns_steps = cfg_.muon_backend_steps,
                       .weight_decay = cfg_.muon_weight_decay, .row_normalize = cfg_.muon_row_normalize,
                       .ns_bf16 = cfg_.muon_ns_bf16, .polar_express = cfg_.muon_polar_express};
  }
  using AdamT = decltype(Policy::adam(std::declval<Model&>(), OptimGroup::adam_embed, AdamOptions{}));
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

  dist::Communicator* comm_ = &dist::world();  // before cfg_ and model_, which use its size
  TrainConfig cfg_;
  RunLog& log_;
  Data data_;
  Model model_;
  using MuonT = decltype(Policy::muon(std::declval<Model&>(), MuonOptions{}));
  std::optional<MuonT> muon_;
  std::optional<MuonShard<MuonWire>> muon_shard_;
  AdamT embed_, head_, scalar_;
  std::optional<AdamT> matrix_adam_;
  static constexpr bool kTokenWeights = requires(Model m, std::span<const T> w) { m.set_token_weights(w); };
  static constexpr int kPhases = [] {
    if constexpr (requires { Model::kPhases; }) return int(Model::kPhases);
    else return 1;
  }();
  static constexpr bool kDistill = requires(Model m, const Model& teacher) {
    m.distill_from(teacher, ops::cpu::DistillOptions{});
    m.clear_teacher();
  };
  std::optional<ReplayBuffer> replay_;
  CommTime comm_time_;                // this process's, since it started (not checkpointed)
  bool post_trained_ = false;         // the end phase ran on these weights (reset by the next step)
  // Inside the end phase (checkpointed, reset when it ends): its optimizer steps taken, the replay
  // epoch's loss sum so far, its time so far (ms), and distillation's teacher once it has begun.
  long long end_steps_ = 0;
  double end_loss_ = 0, end_ms_ = 0;
  std::vector<T> teacher_;
  long long checkpointed_step_ = -1;  // the step of the last checkpoint written or loaded
  static constexpr bool kSliding = requires(const Data& d, Model& m) { d.evaluate_sliding(m, 1); };
  // The trained weights' sliding-window score after the last validation (outside the clock).
  void log_final_sliding() {
    const auto t = Clock::now();
    const Metrics m = validate_final();
    const double ms = ms_since(t);
    log_.print(format("final_prequant_sliding_window val_loss:%.4f val_bpb:%.4f stride:%d seq_len:%d eval_time:%.0fms",
                      m.val_loss(), m.val_bpb(), cfg_.eval_stride, cfg_.eval_window(), ms));
    log_.print(format("final_prequant_sliding_window_exact val_loss:%.8f val_bpb:%.8f", m.val_loss(), m.val_bpb()));
    JsonLine line;
    line.add("event", "val_sliding").add("step", step_).add("eval_stride", cfg_.eval_stride).add("seq_len", cfg_.eval_window());
    data_.add_metrics(line, m);
    log_.metric(line.add("eval_time_ms", ms).str());
  }
  static constexpr double kDefaultLoopEnableAt = 0.35;  // the strongest records' switch point
  void sync_phase(double elapsed_ms) {
    if constexpr (kPhases > 1) {
      const int p = phase_for(step_, elapsed_ms);
      if (p != model_.phase()) {
        model_.set_phase(p);
        log_.print(format("depth_schedule:%s step:%lld/%lld", p == 1 ? "looped" : "base", step_, cfg_.iterations));
      }
    }
  }
  double loop_at_ = 1.0;
  // Weight averaging and late QAT (the records' recipe; config.hpp).
  using Mirror = typename Policy::Mirror;
  std::optional<Mirror> ema_, swa_;
  long long swa_count_ = 0;
  using FakeQuantT = decltype(Policy::fake_quant(std::declval<Model&>()));
  std::optional<FakeQuantT> fq_;
  long long qat_on_step_ = -1;        // the step QAT switched on at; -1: not yet (latched once on)
  std::optional<std::vector<T>> raw_;  // the trained weights while the averaged ones are loaded
  std::string weights_ = "raw";        // which weights the model holds: raw, ema, swa, swa_of_ema
  // At the end of run(): loads the selected average into the model (once) and says so in the log.
  void apply_average() {
    const std::string a = cfg_.average_kind();
    if (a == "none" || raw_) return;
    const std::string w = averaged_weights(a, swa_count_);  // what eval/export of a checkpoint load too
    if (w == "raw") {
      log_.print("weights:raw (swa collected nothing: no swa_every step had the LR multiplier under swa_threshold)");
      return;
    }
    raw_ = Policy::params_to_host(model_);
    if (w == "ema") {
      Policy::load(model_, *ema_);
      weights_ = "ema";
      log_.print(format("weights:ema decay:%g%s", cfg_.ema_decay,
                        a == "ema" ? "" : " (swa collected nothing: no swa_every step had the LR multiplier under swa_threshold)"));
    } else {
      Policy::load_average(model_, *swa_, swa_count_);
      weights_ = a;
      log_.print(format("weights:%s count:%lld%s", a.c_str(), swa_count_,
                        a == "swa_of_ema" ? format(" ema_decay:%g", cfg_.ema_decay).c_str() : ""));
    }
  }
  std::optional<TokenRecycler> recycler_;
  std::function<void(long long, double)> on_step_;
  long long step_ = 0;
  double train_ms_ = 0;
};

}  // namespace pgolf
