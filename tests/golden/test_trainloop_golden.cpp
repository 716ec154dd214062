// pgolf's Trainer against a float64 replay of the reference trainer's loop
// (tests/golden/make_trainloop_golden.py on reference_trainer.py): the same initial weights and the
// same shards, read by pgolf's loader. The training loss and every parameter tensor after every
// optimizer step, and every validation loss, must match. The runs cross every schedule boundary
// (momentum warm-up, warmdown, validation cadence, shard change and wrap-around), with one and with
// four micro-steps per step, so an off-by-one, a tensor in the wrong group or a different Adam or
// Muon formula shows up at the step where it first acts.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "golden_file.hpp"
#include "pgolf/data/byte_tables.hpp"
#include "pgolf/data/token_stream.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/train/evaluate.hpp"
#include "pgolf/train/trainer.hpp"

using namespace pgolf;

namespace {

constexpr GptSpec kLoop{
    .vocab = 32, .dim = 8, .depth = {.layers = 2}, .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 4}};
using Model = Gpt<kLoop, double>;

struct LoopGolden {
  std::string spec;
  std::map<std::string, std::string> config;
  std::map<long long, double> train_loss, val_loss;
  std::vector<std::pair<std::string, std::size_t>> params;
  std::vector<std::vector<double>> snapshots;  // weights after step 0 (init), 1, ..., iterations

  double num(const std::string& key) const {
    const auto it = config.find(key);
    REQUIRE(it != config.end());
    return std::strtod(it->second.c_str(), nullptr);
  }
};

LoopGolden load_loop_golden(const std::string& name) {
  const std::string base = std::string(PGOLF_GOLDEN_DIR) + "/" + name;
  LoopGolden g;
  test::read_manifest(base, g.spec, g.params, [&g](const std::string& key, std::istream& is) {
    if (key == "train_loss" || key == "val_loss") {
      long long step = 0;
      is >> step;
      (key == "train_loss" ? g.train_loss : g.val_loss)[step] = test::read_number(is);
    } else {
      is >> g.config[key];
    }
  });
  std::size_t total = 0;
  for (const auto& p : g.params) total += p.second;
  const auto steps = std::size_t(g.num("iterations"));
  std::ifstream bin(base + ".bin", std::ios::binary);
  REQUIRE(bin.good());
  g.snapshots.assign(steps + 1, std::vector<double>(total));
  for (auto& s : g.snapshots) {
    bin.read(reinterpret_cast<char*>(s.data()), std::streamsize(total * 8));
    REQUIRE(bin.gcount() == std::streamsize(total * 8));
  }
  REQUIRE(bin.peek() == std::char_traits<char>::eof());
  return g;
}

// The golden's shards through pgolf's loader and evaluation (FineWebData's wiring with the
// golden's small vocabulary; the byte tables are the bundled tokenizer's and only feed val_bpb).
class ShardSource {
 public:
  using Metrics = BpbMeter;
  ShardSource(const std::string& dir, int seq_len)
      : dir_(dir),
        tables_(data::Tokenizer(std::string(PGOLF_DATA_DIR) + "/tokenizers/fineweb_1024_bpe.model"), kLoop.vocab),
        val_(data::load_validation_tokens(data::find_shards(dir, "val"), seq_len, kLoop.vocab)) {}

  data::Batch next_batch(const TrainConfig& c, int accum) {
    if (!loader_) loader_ = std::make_unique<data::TokenLoader>(data::find_shards(dir_, "train"), kLoop.vocab);
    return loader_->next_batch(c.train_batch_tokens, c.train_seq_len, accum);
  }
  template <class M>
  Metrics evaluate(M& m) const {
    return pgolf::evaluate(m, val_, tables_);
  }
  static std::string describe(const Metrics& m) { return format("val_loss:%.6f", m.val_loss()); }
  static void add_metrics(JsonLine& j, const Metrics& m) { j.add("val_loss", m.val_loss()); }
  std::pair<std::uint64_t, std::uint64_t> position() const { return {0, 0}; }
  void seek(std::pair<std::uint64_t, std::uint64_t>) {}

 private:
  std::string dir_;
  data::ByteTables tables_;
  std::vector<std::int32_t> val_;
  std::unique_ptr<data::TokenLoader> loader_;
};

TrainConfig golden_config(const LoopGolden& g) {
  TrainConfig c;
  c.iterations = (long long)g.num("iterations");
  c.warmdown_iters = (long long)g.num("warmdown_iters");
  c.max_wallclock_seconds = 0;  // warmdown by iterations
  c.val_loss_every = (long long)g.num("val_loss_every");
  c.train_log_every = 0;
  c.train_batch_tokens = (long long)g.num("train_batch_tokens");
  c.train_seq_len = int(g.num("train_seq_len"));
  c.micro_batch_tokens = c.train_batch_tokens / (long long)g.num("grad_accum_steps");
  c.matrix_lr = g.num("matrix_lr");
  c.scalar_lr = g.num("scalar_lr");
  c.tied_embed_lr = g.num("tied_embed_lr");
  c.muon_momentum = g.num("muon_momentum");
  c.muon_momentum_warmup_start = g.num("muon_momentum_warmup_start");
  c.muon_momentum_warmup_steps = (long long)g.num("muon_momentum_warmup_steps");
  c.muon_backend_steps = int(g.num("muon_backend_steps"));
  c.beta1 = g.num("beta1");
  c.beta2 = g.num("beta2");
  c.adam_eps = g.num("adam_eps");
  REQUIRE(c.grad_accum_steps() == int(g.num("grad_accum_steps")));
  return c;
}

// Per tensor relative L2 error of the model's weights against a snapshot; the worst one.
struct WorstTensor {
  double rel = 0;
  std::string name;
};
WorstTensor compare_weights(const LoopGolden& g, std::span<const double> w, const std::vector<double>& snap) {
  WorstTensor worst;
  std::size_t at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    const auto& p = Model::param_table[i];
    double num = 0, den = 0;
    for (std::size_t j = 0; j < p.numel(); ++j) {
      const double e = w[p.offset + j] - snap[at + j];
      num += e * e;
      den += snap[at + j] * snap[at + j];
    }
    at += p.numel();
    const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    if (!(rel <= worst.rel)) worst = {rel, g.params[i].first};  // NaN counts as worst
  }
  return worst;
}

struct Replay {
  double worst_loss = 0, worst_val = 0;
  WorstTensor worst_weights;
  long long first_bad_step = -1;  // first step whose weights differ by more than 1e-9
  std::vector<long long> val_steps;
};

Replay replay(const LoopGolden& g, TrainConfig cfg) {
  REQUIRE(g.params.size() == Model::param_table.size());
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    REQUIRE(g.params[i].first == Model::param_table[i].name.view());
    REQUIRE(g.params[i].second == Model::param_table[i].numel());
  }
  RunLog log;
  Trainer<Model, ShardSource> tr(cfg, log, ShardSource(std::string(PGOLF_GOLDEN_DIR) + "/trainloop_data", cfg.train_seq_len));
  // The reference's own initialisation (torch.manual_seed + its modules), in table order.
  std::size_t at = 0;
  for (const auto& p : Model::param_table) {
    std::copy_n(g.snapshots[0].begin() + std::ptrdiff_t(at), p.numel(), tr.model().params().begin() + std::ptrdiff_t(p.offset));
    at += p.numel();
  }
  Replay r;
  tr.on_step([&](long long step, double loss) {
    REQUIRE(g.train_loss.count(step) == 1);
    r.worst_loss = std::max(r.worst_loss, std::abs(loss - g.train_loss.at(step)) / std::abs(g.train_loss.at(step)));
    const WorstTensor w = compare_weights(g, tr.model().params(), g.snapshots[std::size_t(step)]);
    if (!(w.rel <= r.worst_weights.rel)) r.worst_weights = w;
    if (!(w.rel <= 1e-9) && r.first_bad_step < 0) r.first_bad_step = step;
  });
  const auto res = tr.run();
  REQUIRE(res.steps == cfg.iterations);
  for (const auto& v : res.val) {
    r.val_steps.push_back(v.step);
    if (g.val_loss.count(v.step))
      r.worst_val = std::max(r.worst_val, std::abs(v.val_loss - g.val_loss.at(v.step)) / g.val_loss.at(v.step));
  }
  return r;
}

void check_trainloop(const std::string& name) {
  const LoopGolden g = load_loop_golden(name);
  REQUIRE(g.spec == "vocab=32 dim=8 layers=2 heads=2 kv_heads=1 mlp_mult=2");
  const Replay r = replay(g, golden_config(g));
  INFO(name << ": worst relative errors: train loss " << r.worst_loss << ", val loss " << r.worst_val << ", weights "
            << r.worst_weights.rel << " (" << r.worst_weights.name << "), first step over 1e-9: " << r.first_bad_step);
  std::vector<long long> golden_val_steps;
  for (const auto& [step, v] : g.val_loss) golden_val_steps.push_back(step);
  CHECK(r.val_steps == golden_val_steps);
  CHECK(r.worst_loss < 1e-9);
  CHECK(r.worst_val < 1e-9);
  CHECK(r.first_bad_step == -1);
  CHECK(r.worst_weights.rel < 1e-9);
}

}  // namespace

TEST_CASE("Trainer matches the reference trainer's loop: one micro-step per step", "[golden]") {
  check_trainloop("trainloop_accum1");
}

TEST_CASE("Trainer matches the reference trainer's loop: four micro-steps per step", "[golden]") {
  check_trainloop("trainloop_accum4");
}

// The comparison has teeth: a momentum warm-up or a warmdown one step longer, or another Adam
// epsilon, is caught at the step where it first acts.
TEST_CASE("the training-loop golden catches a one-step schedule shift", "[golden]") {
  const LoopGolden g = load_loop_golden("trainloop_accum1");
  SECTION("momentum warm-up one step longer") {
    TrainConfig c = golden_config(g);
    ++c.muon_momentum_warmup_steps;
    const Replay r = replay(g, c);
    CHECK(r.first_bad_step == 2);  // step 1 uses momentum at frac 0 either way
  }
  SECTION("warmdown one step longer") {
    TrainConfig c = golden_config(g);
    ++c.warmdown_iters;
    const Replay r = replay(g, c);
    // The multiplier is (N - s) / W from step index s = N - W, where it is still 1: the first step
    // it changes is s = N - W + 1, which is step N - W + 2 counted from 1.
    CHECK(r.first_bad_step == c.iterations - c.warmdown_iters + 2);
  }
  SECTION("Adam epsilon") {
    TrainConfig c = golden_config(g);
    c.adam_eps *= 2;
    const Replay r = replay(g, c);
    CHECK(r.first_bad_step == 1);
  }
}
