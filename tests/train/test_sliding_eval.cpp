// Sliding-window evaluation (train/sliding_eval.hpp) on a tiny double-precision model with random
// weights (so every position's score depends on its context): stride = window is the standard
// evaluation bit for bit; otherwise the sum equals a brute-force reference that, for each token,
// runs the model on exactly the window the definition gives it; every token is scored exactly once;
// ranks add up to one process; bad strides are clear errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "pgolf/data/token_stream.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/train/evaluate.hpp"
#include "pgolf/train/sliding_eval.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_fixture.hpp"

using namespace pgolf;
using namespace pgolf::test;
namespace fs = std::filesystem;

namespace {

using Model = Gpt<kTrainSpec, double>;
constexpr int kL = 16, kB = 3;

struct Fixture {
  data::Tokenizer tok{fs::path(PGOLF_DATA_DIR) / "tokenizers/fineweb_1024_bpe.model"};
  data::ByteTables tables{(tok.check_vocab(kTrainSpec.vocab), tok), kTrainSpec.vocab};
  std::vector<std::int32_t> val = data::load_validation_tokens(
      data::find_shards(fs::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini", "val"), kL, kTrainSpec.vocab, 4097);
  std::vector<double> params = random_params();

  // The reference initialisation plus uniform noise: the zero-initialised projections become
  // non-zero, so attention (and with it the context) changes every score.
  static std::vector<double> random_params() {
    Model m(1, 1);
    m.init(1337);
    std::vector<double> p = m.params_host();
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(-0.1, 0.1);
    for (double& v : p) v += u(rng);
    return p;
  }
  std::unique_ptr<Model> model(int batch, int seq_len) const {
    auto m = std::make_unique<Model>(batch, seq_len);
    m->set_params(params);
    return m;
  }
  std::span<const std::int32_t> stream(std::size_t positions) const {
    REQUIRE(positions + 1 <= val.size());
    return std::span<const std::int32_t>(val).first(positions + 1);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

bool close(double a, double b, double rel = 1e-12) { return std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)); }

// For each target position t of the stream: the window that scores it by the definition (the first
// window [0, L) for t < L; else the window ws = kS with t in [ws + L - S, ws + L), k = (t - L) / S + 1),
// run alone by a model of exactly that window's length (no padding), its score at t summed.
BpbMeter brute_force(std::span<const std::int32_t> stream, int stride) {
  const Fixture& f = fixture();
  const std::size_t n = stream.size() - 1, L = kL, S = std::size_t(stride);
  std::map<std::size_t, std::vector<double>> scores;  // by window start
  BpbMeter m;
  for (std::size_t t = 0; t < n; ++t) {
    const std::size_t ws = t < L ? 0 : ((t - L) / S + 1) * S;
    REQUIRE(t >= ws);
    REQUIRE(t < ws + L);
    REQUIRE((ws == 0 || t >= ws + L - S));  // at least L - S tokens of context
    const std::size_t len = std::min(L, n - ws);
    auto it = scores.find(ws);
    if (it == scores.end()) {
      auto model = f.model(1, int(len));
      model->forward(stream.subspan(ws, len), stream.subspan(ws + 1, len));
      const auto nll = model->row_losses();
      it = scores.emplace(ws, std::vector<double>(nll.begin(), nll.end())).first;
    }
    const std::int32_t prev = stream[t], target = stream[t + 1];
    m.add(f.tables, std::span<const std::int32_t>(&prev, 1), std::span<const std::int32_t>(&target, 1),
          std::span<const double>(&it->second[t - ws], 1));
  }
  return m;
}

}  // namespace

TEST_CASE("sliding evaluation with stride = window is the standard evaluation, bit for bit", "[forward][train]") {
  const Fixture& f = fixture();
  auto model = f.model(kB, kL);  // 4096 positions: 256 windows, the last batch of 3 padded
  const BpbMeter standard = evaluate(*model, f.val, f.tables);
  const BpbMeter sliding = evaluate_sliding(*model, f.val, f.tables, kL);
  CHECK(standard.tokens == 4096);
  CHECK(sliding.tokens == standard.tokens);
  CHECK(sliding.bytes == standard.bytes);
  CHECK(sliding.loss_sum == standard.loss_sum);  // exact
  // A shorter stride scores the same tokens with more context: a different sum (the test can fail).
  const BpbMeter strided = evaluate_sliding(*model, f.val, f.tables, 4);
  CHECK(strided.tokens == standard.tokens);
  CHECK(strided.bytes == standard.bytes);
  CHECK_FALSE(close(strided.loss_sum, standard.loss_sum, 1e-6));
}

TEST_CASE("sliding evaluation equals a brute-force per-token reference", "[forward][train]") {
  const Fixture& f = fixture();
  auto model = f.model(kB, kL);
  // Stream lengths: one window, one more than a window, not multiples of the stride, tail windows.
  for (std::size_t n : {std::size_t(16), std::size_t(17), std::size_t(37), std::size_t(101), std::size_t(160)}) {
    for (int stride : {1, 3, 5, 7, 15, 16}) {
      INFO("positions " << n << " stride " << stride);
      const auto stream = f.stream(n);
      const BpbMeter got = evaluate_sliding(*model, stream, f.tables, stride);
      const BpbMeter want = brute_force(stream, stride);
      CHECK(got.tokens == double(n));  // every position once
      CHECK(got.tokens == want.tokens);
      CHECK(got.bytes == want.bytes);
      CHECK(close(got.loss_sum, want.loss_sum));
    }
  }
}

TEST_CASE("the fixed variant's windows score every position exactly once", "[forward][train]") {
  for (std::size_t L : {1, 2, 5, 16}) {
    for (std::size_t S = 1; S <= L; ++S) {
      for (std::size_t n = 1; n <= 3 * L + 7; ++n) {
        INFO("L " << L << " S " << S << " n " << n);
        const SlidingWindows w(n, L, S);
        std::vector<int> hits(n, 0);
        for (std::size_t k = 0; k < w.count(); ++k) {
          REQUIRE(w.start(k) < n);
          REQUIRE(w.first_scored(k) < w.length(k));  // every window scores something
          for (std::size_t p = w.start(k) + w.first_scored(k); p < w.start(k) + w.length(k); ++p) ++hits[p];
        }
        CHECK(std::count(hits.begin(), hits.end(), 1) == std::ptrdiff_t(n));
      }
    }
  }
}

TEST_CASE("sliding evaluation split over ranks sums to the single-process meter", "[forward][train]") {
  const Fixture& f = fixture();
  auto model = f.model(kB, kL);
  // 101 positions at stride 5: 18 windows (6 per rank); 16 positions: one window, two ranks idle;
  // 160 at stride 7: 22 windows, ranks of 7, 7 and 8.
  for (auto [n, stride] : {std::pair<std::size_t, int>{101, 5}, {16, 5}, {160, 7}}) {
    INFO("positions " << n << " stride " << stride);
    const auto stream = f.stream(n);
    const BpbMeter one = evaluate_sliding(*model, stream, f.tables, stride);
    BpbMeter sum;
    for (int r = 0; r < 3; ++r) sum.merge(evaluate_sliding(*model, stream, f.tables, stride, r, 3));
    CHECK(sum.tokens == one.tokens);
    CHECK(sum.bytes == one.bytes);
    CHECK(close(sum.loss_sum, one.loss_sum));
    CHECK(one.tokens == double(n));
  }
}

TEST_CASE("bad strides are clear errors", "[forward][train][bad_input]") {
  const Fixture& f = fixture();
  auto model = f.model(kB, kL);
  CHECK_THROWS_WITH(evaluate_sliding(*model, f.val, f.tables, 0), Catch::Contains("eval_stride must be in 1..16"));
  CHECK_THROWS_WITH(evaluate_sliding(*model, f.val, f.tables, 17), Catch::Contains("eval_stride must be in 1..16"));
  CHECK_THROWS_WITH(evaluate_sliding(*model, f.stream(0), f.tables, 4), Catch::Contains("at least two"));
  TrainConfig c = small_config();
  c.eval_stride = -1;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("eval_stride must be in 1..train_seq_len (64)"));
  c.eval_stride = 65;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("eval_stride must be in 1..train_seq_len (64)"));
  c.eval_stride = 64;
  CHECK_NOTHROW(c.validate());
  c.eval_seq_len = 128;  // a longer window allows a longer stride
  c.eval_stride = 128;
  CHECK_NOTHROW(c.validate());
  c.eval_stride = 129;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("eval_stride must be in 1..eval_seq_len (128)"));
  c.eval_stride = 0;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("eval_seq_len (128) is the sliding window's length, but eval_stride is 0"));
  c.eval_stride = 16;
  c.eval_seq_len = -1;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("eval_seq_len must be in 1..131072"));
  c.eval_seq_len = TrainConfig::kMaxEvalSeqLen + 1;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("eval_seq_len must be in 1..131072"));
}

TEST_CASE("eval_seq_len scores the final weights with windows of that length, on a second model", "[forward][train]") {
  const fs::path dir = fs::temp_directory_path() / "pgolf_test_sliding_eval_window";
  fs::remove_all(dir);
  TrainConfig c = small_config();  // train_seq_len 64
  c.iterations = 2;
  c.eval_stride = 32;
  c.eval_seq_len = 128;
  {
    RunLog log({.out_dir = dir, .console = false, .progress = false});
    Trainer<Gpt<kTrainSpec, double>> tr(c, log);
    tr.run();
    const BpbMeter final_scores = tr.validate_final();
    // The same weights in a model built for 128 positions (another batch size: the windows' scores do
    // not depend on it), evaluated directly.
    Gpt<kTrainSpec, double> wide(2, 128);
    wide.set_params(tr.model().params_host());
    const BpbMeter direct = evaluate_sliding(wide, tr.data().val_tokens(), tr.data().tables(), 32);
    CHECK(final_scores.tokens == 4096);
    CHECK(final_scores.tokens == direct.tokens);
    CHECK(close(final_scores.loss_sum, direct.loss_sum));
    // Not the training length's windows: the window is what changed.
    const BpbMeter at_64 = evaluate_sliding(tr.model(), tr.data().val_tokens(), tr.data().tables(), 32);
    CHECK(!close(final_scores.loss_sum, at_64.loss_sum, 1e-6));
    CHECK(tr.model().seq_len() == 64);  // the training model is untouched
  }
  std::ifstream in(dir / "train.log");
  std::stringstream text;
  text << in.rdbuf();
  CHECK_THAT(text.str(), Catch::Contains("stride:32 seq_len:128 eval_time:"));
  fs::remove_all(dir);
}

TEST_CASE("a run with eval_stride scores its final weights by sliding window, and says so", "[forward][train]") {
  const fs::path dir = fs::temp_directory_path() / "pgolf_test_sliding_eval_run";
  fs::remove_all(dir);
  TrainConfig c = small_config();
  c.iterations = 2;
  c.eval_stride = 16;
  double logged_bpb = 0;
  {
    RunLog log({.out_dir = dir, .console = false, .progress = false});
    Trainer<Gpt<kTrainSpec, float>> tr(c, log);
    tr.run();
    const BpbMeter final_scores = tr.validate_final();
    const BpbMeter direct = evaluate_sliding(tr.model(), tr.data().val_tokens(), tr.data().tables(), 16);
    CHECK(final_scores.loss_sum == direct.loss_sum);
    CHECK(final_scores.tokens == 4096);
    CHECK(final_scores.loss_sum != tr.validate().loss_sum);  // not the standard evaluation
    logged_bpb = direct.val_bpb();
  }
  std::ifstream in(dir / "train.log");
  std::stringstream text;
  text << in.rdbuf();
  CHECK_THAT(text.str(), Catch::Contains("final_prequant_sliding_window val_loss:") &&
                             Catch::Contains("stride:16 seq_len:64 eval_time:") &&
                             Catch::Contains("final_prequant_sliding_window_exact val_loss:"));
  char bpb[32];
  std::snprintf(bpb, sizeof bpb, "val_bpb:%.8f", logged_bpb);
  CHECK_THAT(text.str(), Catch::Contains(bpb));
  fs::remove_all(dir);
}
