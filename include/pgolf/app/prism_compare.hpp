// The PRISM comparison harness (PRISM.md 4 and 4.1, done properly): every model trains through the
// same Trainer on the identical data stream with the reference harness's recipe (AdamW 3e-3,
// weight decay 0.01 on every tensor, betas 0.9/0.999, warm-up max(1, steps/10) then cosine to 0,
// global-norm clip 1.0, batch 32), then is scored on fresh held-out sequences per seed.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <type_traits>
#include <cstdio>
#include <string>
#include <vector>

#include "pgolf/core/format.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/data/toy_tasks.hpp"
#include "pgolf/model/prism.hpp"
#include "pgolf/model/prism_modular.hpp"
#include "pgolf/train/curriculum.hpp"
#include "pgolf/train/trainer.hpp"

namespace pgolf::app {

struct CompareOptions {
  data::ToyTask task = data::ToyTask::induction;
  data::ToyTaskOptions task_options{};
  long long steps = 400;
  std::vector<std::uint64_t> seeds{0, 1, 2};
  int batch = 32;
  double lr = 3e-3;
  double weight_decay = 0.01;
  double clip = 1.0;
  std::vector<std::string> models;  // empty: all
  long long modular_steps = 0;      // > 0: also run modular pretraining (steps per expert kind)
  bool mixture = false;             // copy + induction + reasoning in one stream (focus neural, memory, symbolic)
  bool curriculum = false;          // with mixture: the reference's phase-dependent weights
  double token_recycling = 0.0;     // > 0: token recycling at this strength (PRISM models only)
  std::string task_name() const { return mixture ? (curriculum ? "mixture+curriculum" : "mixture") : std::string(to_string(task)); }
};

// The data source of one run.
template <class Data>
Data make_compare_data(const CompareOptions& o, std::uint64_t seed) {
  if constexpr (std::is_same_v<Data, data::ToyTaskMixture>) {
    std::vector<data::MixtureSource> sources{{data::ToyTask::copy, ExpertKind::neural, 1.0},
                                             {data::ToyTask::induction, ExpertKind::memory, 1.0},
                                             {data::ToyTask::reasoning, ExpertKind::symbolic, 1.0}};
    std::optional<CurriculumSchedule> cur;
    if (o.curriculum) cur = CurriculumSchedule{.total_steps = o.steps};
    return data::ToyTaskMixture(std::move(sources), o.task_options, seed, cur);
  } else {
    return data::ToyTaskData(o.task, o.task_options, seed);
  }
}

struct CompareRun {
  std::uint64_t seed = 0;
  double heldout_ce = 0, heldout_acc = 0, train_s = 0, last_train_loss = 0;
  std::string stats_json;  // per-block routing and gate statistics (PRISM models), "" otherwise
};
struct CompareRow {
  std::string model;
  std::size_t params = 0;
  std::vector<CompareRun> runs;
};

inline TrainConfig compare_config(const CompareOptions& o, int seq_len, std::uint64_t seed) {
  TrainConfig c;
  c.iterations = o.steps;
  c.max_wallclock_seconds = 0;
  c.warmdown_iters = 0;
  c.val_loss_every = 0;
  c.train_log_every = 0;
  c.train_seq_len = seq_len;
  c.train_batch_tokens = (long long)o.batch * seq_len;
  c.micro_batch_tokens = c.train_batch_tokens;
  c.optimizer = OptimizerKind::adamw;
  c.lr_schedule = LrSchedule::warmup_cosine;
  c.matrix_lr = c.scalar_lr = c.tied_embed_lr = c.embed_lr = c.head_lr = o.lr;
  c.weight_decay = o.weight_decay;
  c.beta1 = 0.9, c.beta2 = 0.999, c.adam_eps = 1e-8;
  c.grad_clip_norm = o.clip;
  c.seed = seed;
  return c;
}

template <class Model>
std::string prism_stats_json(Model& m) {
  std::string out = "[";
  const auto stats = std::as_const(m).stats();
  const char* kinds[] = {"neural", "memory", "symbolic"};
  for (std::size_t b = 0; b < stats.size(); ++b) {
    const auto& s = stats[b];
    JsonLine j;
    j.add("block", (long long)b);
    for (int k = 0; k < 3; ++k)
      if (s.routed[std::size_t(k)] >= 0) {
        j.add(std::string("routed_") + kinds[k], s.routed[std::size_t(k)]);
        j.add(std::string("prob_") + kinds[k], s.mean_prob[std::size_t(k)]);
      }
    for (std::size_t k = 0; k < s.gate_mean.size(); ++k) {
      j.add(format("gate_mean_%zu", k), s.gate_mean[k]);
      j.add(format("gate_std_%zu", k), s.gate_std[k]);
    }
    if (s.read_entropy >= 0) j.add("read_entropy", s.read_entropy).add("slot_spread", s.slot_spread);
    if (s.symbolic_entropy >= 0) j.add("symbolic_entropy", s.symbolic_entropy);
    j.add("load_balance", s.load_balance);
    out += (b ? "," : "") + j.str();
  }
  return out + "]";
}

// Trains and scores one model on every seed; prints one line per run.
template <class Model, class Data = data::ToyTaskData>
CompareRow compare_model(const std::string& name, const CompareOptions& o) {
  CompareRow row{name, Model::num_params, {}};
  if (!o.models.empty() && std::find(o.models.begin(), o.models.end(), name) == o.models.end()) return row;
  for (std::uint64_t seed : o.seeds) {
    Data task = make_compare_data<Data>(o, seed);
    RunLog quiet;
    TrainConfig cfg = compare_config(o, task.seq_len(), seed);
    if constexpr (requires(Model m, std::span<const float> w) { m.set_token_weights(w); })
      cfg.token_recycling = o.token_recycling;
    Trainer<Model, Data> tr(cfg, quiet, task);
    const auto res = tr.run();
    const auto m = tr.validate();
    CompareRun run{seed, m.loss, m.accuracy, res.train_ms / 1000.0, res.train.empty() ? 0.0 : res.train.back().train_loss,
                   ""};
    if constexpr (requires { tr.model().stats(); }) {
      // Statistics of one held-out batch.
      const std::size_t B = std::size_t(tr.model().batch()), T = std::size_t(tr.model().seq_len());
      std::vector<std::int32_t> x(B * T), y(B * T);
      for (std::size_t r = 0; r < B; ++r) task.heldout_sequence(r, x.data() + r * T, y.data() + r * T);
      tr.model().forward(x, y);
      run.stats_json = prism_stats_json(tr.model());
    }
    std::printf("%-18s seed %llu  heldout_ce %.4f  heldout_acc %.4f  train %.2f s  (%lld steps)\n", name.c_str(),
                (unsigned long long)seed, run.heldout_ce, run.heldout_acc, run.train_s, res.steps);
    std::fflush(stdout);
    row.runs.push_back(std::move(run));
  }
  return row;
}

// Modular pretraining (PRISM.md 5.1): per seed, a single-kind model per kind of the mix trains for
// modular_steps on the same task, its experts are assembled into a fresh full model, which then
// trains for `steps` like the others. The reported train time includes the pretraining.
template <PrismSpec Full, class Data = data::ToyTaskData>
CompareRow compare_modular(const std::string& name, const CompareOptions& o) {
  using Model = Prism<Full>;
  CompareRow row{name, Model::num_params, {}};
  if (o.modular_steps <= 0) return row;
  if (!o.models.empty() && std::find(o.models.begin(), o.models.end(), name) == o.models.end()) return row;
  for (std::uint64_t seed : o.seeds) {
    Data task = make_compare_data<Data>(o, seed);
    RunLog quiet;
    TrainConfig pre = compare_config(o, task.seq_len(), seed);
    pre.iterations = o.modular_steps;
    Trainer<Model, Data> tr(compare_config(o, task.seq_len(), seed), quiet, task);
    double pre_ms = 0;
    auto pretrain = [&](auto kind_tag) {
      constexpr PrismSpec single = prism_single_kind(Full, decltype(kind_tag)::value);
      if constexpr (Full.experts.has(decltype(kind_tag)::value)) {
        Trainer<Prism<single>, Data> p(pre, quiet, task);
        pre_ms += p.run().train_ms;
        assemble_experts<Full, single>(tr.model(), std::span<const float>(p.model().params()));
      }
    };
    pretrain(std::integral_constant<ExpertKind, ExpertKind::neural>{});
    pretrain(std::integral_constant<ExpertKind, ExpertKind::memory>{});
    pretrain(std::integral_constant<ExpertKind, ExpertKind::symbolic>{});
    const auto res = tr.run();
    const auto m = tr.validate();
    CompareRun run{seed, m.loss, m.accuracy, (pre_ms + res.train_ms) / 1000.0,
                   res.train.empty() ? 0.0 : res.train.back().train_loss, ""};
    std::printf("%-18s seed %llu  heldout_ce %.4f  heldout_acc %.4f  train %.2f s  (%lld + %lld per kind steps)\n",
                name.c_str(), (unsigned long long)seed, run.heldout_ce, run.heldout_acc, run.train_s, res.steps,
                o.modular_steps);
    std::fflush(stdout);
    row.runs.push_back(std::move(run));
  }
  return row;
}

inline void print_compare_table(const CompareOptions& o, const std::vector<CompareRow>& rows) {
  std::printf("\n=== %s: %lld steps, batch %d, %zu seed(s), held-out %d sequences per seed%s ===\n",
              o.task_name().c_str(), o.steps, o.batch, o.seeds.size(), o.task_options.eval_sequences,
              o.mixture ? " and task" : "");
  std::printf("%-18s %10s  %-26s %10s %12s\n", "model", "params", "held-out CE mean (min-max)", "acc mean",
              "train s mean");
  for (const auto& r : rows) {
    if (r.runs.empty()) continue;
    double ce = 0, lo = 1e300, hi = -1e300, acc = 0, t = 0;
    for (const auto& x : r.runs) ce += x.heldout_ce, acc += x.heldout_acc, t += x.train_s, lo = std::min(lo, x.heldout_ce),
                                 hi = std::max(hi, x.heldout_ce);
    const double n = double(r.runs.size());
    std::printf("%-18s %10zu  %.3f (%.3f-%.3f)%9s %10.3f %12.2f\n", r.model.c_str(), r.params, ce / n, lo, hi, "",
                acc / n, t / n);
  }
}

inline std::string compare_json(const CompareOptions& o, const std::vector<CompareRow>& rows) {
  std::string s = JsonLine()
                      .add("task", o.task_name())
                      .add("token_recycling", o.token_recycling)
                      .add("steps", o.steps)
                      .add("batch", (long long)o.batch)
                      .add("lr", o.lr)
                      .add("weight_decay", o.weight_decay)
                      .add("clip", o.clip)
                      .add("eval_sequences", (long long)o.task_options.eval_sequences)
                      .str();
  s.pop_back();
  s += ",\"models\":[";
  bool first = true;
  for (const auto& r : rows) {
    if (r.runs.empty()) continue;
    s += (first ? "" : ",") + std::string("{\"model\":\"") + r.model + "\",\"params\":" + std::to_string(r.params) +
         ",\"runs\":[";
    for (std::size_t i = 0; i < r.runs.size(); ++i) {
      const auto& x = r.runs[i];
      std::string run = JsonLine()
                            .add("seed", (long long)x.seed)
                            .add("heldout_ce", x.heldout_ce)
                            .add("heldout_acc", x.heldout_acc)
                            .add("train_s", x.train_s)
                            .add("last_train_loss", x.last_train_loss)
                            .str();
      if (!x.stats_json.empty()) {
        run.pop_back();
        run += ",\"blocks\":" + x.stats_json + "}";
      }
      s += (i ? "," : "") + run;
    }
    s += "]}";
    first = false;
  }
  return s + "]}\n";
}

}  // namespace pgolf::app
