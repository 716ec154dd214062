// The records' training recipe inside the Trainer: EMA and SWA of the weights (checked against
// their formulas in double), late QAT with the straight-through estimator, and resume exactness
// with all of them on.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "pgolf/data/shard.hpp"
#include "pgolf/train/qat.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_fixture.hpp"

using namespace pgolf;
using namespace pgolf::test;
namespace fs = std::filesystem;

namespace {
using ModelD = Gpt<kTrainSpec, double>;
using Model = Gpt<kTrainSpec, float>;

template <class M>
std::vector<double> params_of(Trainer<M>& tr) {
  return {tr.model().params().begin(), tr.model().params().end()};
}

// The weights after every step of a run (index 0: the initial weights) and each step's LR multiplier.
template <class M>
std::pair<std::vector<std::vector<double>>, std::vector<double>> trajectory(const TrainConfig& c) {
  RunLog log;
  Trainer<M> tr(c, log);
  std::vector<std::vector<double>> w{params_of(tr)};
  tr.on_step([&](long long, double) { w.push_back(params_of(tr)); });
  const auto r = tr.run();
  std::vector<double> scale;
  for (const auto& t : r.train) scale.push_back(t.lr_scale);
  return {w, scale};
}
}  // namespace

TEST_CASE("EMA: the scored weights are d*ema + (1-d)*w over every step, from the initial weights", "[forward][train][recipe]") {
  TrainConfig c = small_config();
  c.iterations = 5;
  c.ema_decay = 0.9;
  CHECK(c.average_kind() == "ema");
  const auto [w, scale] = trajectory<ModelD>(c);
  REQUIRE(w.size() == 6);
  std::vector<double> ema = w[0];
  for (std::size_t s = 1; s < w.size(); ++s)
    for (std::size_t i = 0; i < ema.size(); ++i) ema[i] = 0.9 * ema[i] + (1.0 - 0.9) * w[s][i];
  RunLog log;
  Trainer<ModelD> tr(c, log);
  const auto r = tr.run();
  CHECK(tr.weights() == "ema");
  CHECK(params_of(tr) == ema);   // exact: the same operations in the same precision
  CHECK(params_of(tr) != w.back());
  // The checkpoint keeps the raw weights (and the EMA) so a resume continues the raw trajectory.
  const auto ck = tr.checkpoint();
  CHECK(std::vector<double>(ck.tensors[0].begin(), ck.tensors[0].end()) == w.back());
  CHECK(tr.ema_host() == ema);
  CHECK(r.val.back().val_loss == tr.validate().val_loss());  // the final val scored the EMA
}

TEST_CASE("SWA: the mean of the weights at every swa_every-th step under the threshold; swa_of_ema of the EMA",
          "[forward][train][recipe]") {
  TrainConfig c = small_config();
  c.iterations = 6;
  c.warmdown_iters = 4;  // multipliers 1, 1, 1, 0.75, 0.5, 0.25
  c.swa_every = 2;
  c.swa_threshold = 0.8;
  for (const double ema_decay : {0.0, 0.8}) {
    c.ema_decay = ema_decay;
    INFO("ema_decay " << ema_decay);
    CHECK(c.average_kind() == (ema_decay > 0 ? "swa_of_ema" : "swa"));
    const auto [w, scale] = trajectory<ModelD>(c);
    REQUIRE(scale.size() == 6);
    std::vector<double> ema = w[0], sum(w[0].size(), 0.0);
    long long count = 0;
    for (std::size_t s = 1; s < w.size(); ++s) {
      for (std::size_t i = 0; i < ema.size(); ++i) ema[i] = ema_decay * ema[i] + (1.0 - ema_decay) * w[s][i];
      if (s % 2 == 0 && scale[s - 1] < 0.8) {
        const auto& src = ema_decay > 0 ? ema : w[s];
        for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += src[i];
        ++count;
      }
    }
    CHECK(count == 2);  // after steps 4 (0.75) and 6 (0.25); step 2 ran at 1
    for (double& v : sum) v /= double(count);
    RunLog log;
    Trainer<ModelD> tr(c, log);
    tr.run();
    CHECK(tr.swa_count() == 2);
    CHECK(tr.weights() == c.average_kind());
    CHECK(params_of(tr) == sum);
  }
}

TEST_CASE("averaging options the chosen average cannot use are refused, naming the field", "[forward][train][recipe][bad_input]") {
  auto fails = [](auto edit, const std::string& msg) {
    TrainConfig c = small_config();
    edit(c);
    CHECK_THROWS_WITH(c.validate(), Catch::Contains(msg));
  };
  fails([](TrainConfig& c) { c.average = "swa"; }, "needs swa_every > 0");
  fails([](TrainConfig& c) { c.average = "ema"; }, "set ema_decay > 0");
  fails([](TrainConfig& c) { c.average = "swa_of_ema"; c.swa_every = 2; }, "set ema_decay > 0");
  fails([](TrainConfig& c) { c.average = "none"; c.ema_decay = 0.9; }, "ema_decay is 0.9");
  fails([](TrainConfig& c) { c.average = "ema"; c.ema_decay = 0.9; c.swa_every = 3; }, "swa_every is 3");
  fails([](TrainConfig& c) { c.average = "mean"; }, "average must be");
  fails([](TrainConfig& c) { c.ema_decay = 1.0; }, "ema_decay must be in [0, 1)");
  fails([](TrainConfig& c) { c.swa_every = 2; c.swa_threshold = 0; }, "swa_threshold must be in (0, 1]");
  fails([](TrainConfig& c) { c.qat_threshold = 0.5; c.qat_bits = 9; }, "qat_bits must be in [2, 8]");
  fails([](TrainConfig& c) { c.qat_threshold = 1.5; }, "qat_threshold must be in [0, 1]");
  fails([](TrainConfig& c) { c.min_lr_scale = 1.0; }, "min_lr_scale must be in [0, 1)");
  fails([](TrainConfig& c) { c.warmdown_fraction = -0.1; }, "warmdown_fraction must be in [0, 1]");
}

TEST_CASE("fake quantisation: per-row scale max(amax/Qmax, 1/Qmax), round half to even, clamp", "[forward][train][recipe]") {
  // bits 3: Qmax 3. Row 0: amax 0.9 -> s = 0.3 (over 1/3? no: 1/3 wins), row 1: amax 6 -> s = 2.
  const std::vector<double> W{0.9, -0.3, 0.1, 0.0, 6.0, -5.0, 1.0, 3.0};
  std::vector<double> out(W.size());
  fake_quantize_rows(W.data(), 2, 4, 3, out.data());
  const double s0 = 1.0 / 3.0;  // 0.9 / 3 = 0.3 < 1/3
  CHECK(out[0] == 3 * s0);       // round(2.7) = 3
  CHECK(out[1] == -1 * s0);      // round(-0.9) = -1
  CHECK(out[2] == 0.0);          // round(0.3) = 0
  CHECK(out[3] == 0.0);
  CHECK(out[4] == 6.0);          // s = 2: 3 * 2
  CHECK(out[5] == -4.0);         // round(-2.5) = -2 (ties to even)
  CHECK(out[6] == 0.0);          // round(0.5) = 0 (ties to even)
  CHECK(out[7] == 4.0);          // round(1.5) = 2
  CHECK_THROWS_WITH(fake_quantize_rows(W.data(), 2, 4, 1, out.data()), Catch::Contains("bits must be in [2, 8]"));
}

TEST_CASE("late QAT: raw weights before the switch, fake-quantised after, masters restored, STE gradient",
          "[forward][train][recipe]") {
  SECTION("the switch follows the LR multiplier and is logged") {
    TrainConfig c = small_config();
    c.iterations = 3;
    c.warmdown_iters = 2;  // multipliers 1, 1, 0.5
    RunLog log;
    Trainer<ModelD> plain(c, log);
    const auto p = plain.run();
    c.qat_threshold = 0.6;
    Trainer<ModelD> qat(c, log);
    const auto q = qat.run();
    CHECK(qat.qat_on_step() == 2);
    CHECK(p.train[0].train_loss == q.train[0].train_loss);  // before the switch: the raw weights, bit for bit
    CHECK(p.train[1].train_loss == q.train[1].train_loss);
    CHECK(p.train[2].train_loss != q.train[2].train_loss);
  }
  SECTION("the forward and gradient are those at W_q; the update lands on the master weights") {
    TrainConfig c = small_config();
    c.iterations = 1;
    c.qat_threshold = 1.0;  // on from step 0
    c.qat_bits = 4;
    c.matrix_lr = c.scalar_lr = c.tied_embed_lr = 0;  // no update: the weights after the step are the masters
    RunLog log;
    Trainer<ModelD> tr(c, log);
    // The output projections start at zero, which would hide every other matrix from the loss at
    // step 0: give all matrices values off the quantisation grid.
    for (const auto& p : ModelD::param_table)
      if (p.group == OptimGroup::muon_matrix)
        for (std::size_t i = 0; i < p.numel(); ++i) tr.model().params()[p.offset + i] = 0.05 * std::sin(0.7 * double(i) + p.offset);
    const std::vector<double> init = params_of(tr);
    const auto r = tr.run();
    CHECK(tr.qat_on_step() == 0);
    CHECK(params_of(tr) == init);  // restored, not left quantised

    // The same batch through a model whose matrices were fake-quantised by hand.
    data::TokenLoader loader(data::find_shards(c.data_path, "train"), 1024);
    const auto b = loader.next_batch(c.train_batch_tokens, c.train_seq_len, 1);
    ModelD ref(int(c.batch_rows()), c.train_seq_len), raw(int(c.batch_rows()), c.train_seq_len);
    ref.init(c.seed);
    raw.init(c.seed);
    std::copy(init.begin(), init.end(), ref.params().begin());
    std::copy(init.begin(), init.end(), raw.params().begin());
    std::size_t quantised = 0;
    for (const auto& p : ModelD::param_table)
      if (p.group == OptimGroup::muon_matrix) {
        double* W = ref.params().data() + p.offset;
        fake_quantize_rows(W, p.rows, p.cols, 4, W);
        for (std::size_t i = 0; i < p.numel(); ++i) quantised += W[i] != init[p.offset + i];
      }
    REQUIRE(quantised > 0);
    const double loss_q = ref.forward(b.x, b.y), loss_raw = raw.forward(b.x, b.y);
    ref.zero_grad();
    ref.backward();
    CHECK(r.train[0].train_loss == Approx(loss_q).epsilon(1e-12));
    CHECK(std::abs(r.train[0].train_loss - loss_raw) > 1e-9);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < ref.grads().size(); ++i) {
      const double d = ref.grads()[i] - tr.model().grads()[i];
      num += d * d;
      den += ref.grads()[i] * ref.grads()[i];
    }
    CHECK(std::sqrt(num / den) < 1e-12);  // dL/dW applied to the masters = dL/dW_q (straight-through)
  }
}

TEST_CASE("EMA, SWA and late QAT resume from a periodic checkpoint bit for bit", "[forward][train][recipe]") {
  TrainConfig c = small_config();
  c.iterations = 7;
  c.warmdown_iters = 4;  // multipliers 1, 1, 1, 1, 0.75, 0.5, 0.25
  c.ema_decay = 0.8;
  c.swa_every = 1;
  c.swa_threshold = 0.8;
  c.qat_threshold = 0.6;  // on at step 5
  c.checkpoint_every = 1;
  c.keep_checkpoints = 10;
  c.out_dir = scratch_dir("recipe_whole").string();
  RunLog log;
  Trainer<Model> whole(c, log);
  const auto all = whole.run();
  REQUIRE(whole.qat_on_step() == 5);
  REQUIRE(whole.swa_count() == 3);
  for (const long long at : {3LL, 6LL}) {  // before QAT and SWA start, and after both
    INFO("resumed at step " << at);
    TrainConfig rc = c;
    rc.out_dir = scratch_dir("recipe_resumed").string();
    Trainer<Model> resumed(rc, log);
    resumed.load_checkpoint(whole.checkpoint_dir().periodic_dir() / format("step_%08lld.bin", at));
    CHECK(resumed.step() == at);
    const auto tail = resumed.run();
    std::vector<double> a, b;
    for (const auto& t : tail.train) a.push_back(t.train_loss);
    for (std::size_t s = std::size_t(at); s < all.train.size(); ++s) b.push_back(all.train[s].train_loss);
    CHECK(a == b);
    CHECK(resumed.swa_count() == 3);
    CHECK(resumed.qat_on_step() == 5);
    CHECK(resumed.weights() == "swa_of_ema");
    CHECK(params_of(resumed) == params_of(whole));
    const auto ra = resumed.checkpoint(), wa = whole.checkpoint();
    CHECK(ra.tensors == wa.tensors);
    CHECK(ra.counters == wa.counters);
  }
  // A checkpoint without the EMA/SWA state does not resume a run that has them on.
  TrainConfig plain = c;
  plain.ema_decay = 0;
  plain.swa_every = 0;
  plain.qat_threshold = 0;
  plain.out_dir.clear();
  Trainer<Model> other(plain, log);
  CHECK_THROWS_WITH(other.load_checkpoint(whole.checkpoint_dir().periodic_dir() / "step_00000003.bin"),
                    Catch::Contains("ema_decay, swa_every, qat_threshold and replay_batches"));
  // A version-2 checkpoint names the switch that differs.
  CHECK_THROWS_WITH(other.load_checkpoint(whole.checkpoint_dir().periodic_dir() / "step_00000003.bin"),
                    Catch::Contains("ema_decay is on in one and off in the other"));
  // ... and the matrices' optimizer when that differs.
  TrainConfig adam = c;
  adam.optimizer = OptimizerKind::adamw;
  adam.out_dir.clear();
  Trainer<Model> adam_run(adam, log);
  CHECK_THROWS_WITH(adam_run.load_checkpoint(whole.checkpoint_dir().periodic_dir() / "step_00000003.bin"),
                    Catch::Contains("its matrices were trained with muon, this run uses adamw"));
}

namespace {
std::string read_text(const fs::path& p) {
  const auto b = read_file_bytes(p);
  return {b.begin(), b.end()};
}
}  // namespace

TEST_CASE("a checkpoint loaded params-only holds the weights its run exported: EMA, SWA, swa_of_ema, raw",
          "[forward][train][recipe]") {
  struct Case {
    const char* name;
    double ema_decay;
    long long swa_every;
    double swa_threshold;
    const char* weights;  // what the run ends with
  };
  // 6 steps, multipliers 1, 1, 1, 0.75, 0.5, 0.25: SWA collects at steps 4 and 6 under 0.8, at none under 0.2.
  for (const Case k : {Case{"ema", 0.9, 0, 0.5, "ema"}, Case{"swa", 0, 2, 0.8, "swa"},
                       Case{"swa_of_ema", 0.8, 2, 0.8, "swa_of_ema"}, Case{"swa_of_ema, nothing collected", 0.8, 2, 0.2, "ema"},
                       Case{"swa, nothing collected", 0, 2, 0.2, "raw"}, Case{"no average", 0, 0, 0.5, "raw"}}) {
    INFO(k.name);
    TrainConfig c = small_config();
    c.iterations = 6;
    c.warmdown_iters = 4;
    c.ema_decay = k.ema_decay;
    c.swa_every = k.swa_every;
    c.swa_threshold = k.swa_threshold;
    const fs::path dir = scratch_dir("ckavg_run");
    RunLog log;
    Trainer<ModelD> tr(c, log);
    tr.run();
    REQUIRE(tr.weights() == k.weights);
    const auto exported = params_of(tr);  // what the run validated and exported
    tr.save_checkpoint(dir / "checkpoint.bin");
    const auto ck = tr.checkpoint();
    REQUIRE(ck.state.has_value());
    CHECK(ck.state->ema == (k.ema_decay > 0));
    CHECK(ck.state->swa == (k.swa_every > 0));
    CHECK(ck.state->average == c.average_kind());

    // A reader configured without any averaging flags finds the average from the file alone.
    RunLog read_log({.out_dir = dir / "reader", .console = false, .progress = false});
    Trainer<ModelD> reader(small_config(), read_log);
    reader.load_checkpoint(dir / "checkpoint.bin", /*params_only=*/true);
    CHECK(reader.weights() == k.weights);
    CHECK(params_of(reader) == exported);  // bit for bit
    CHECK_THAT(read_text(dir / "reader/train.log"), Catch::Contains(std::string("weights:") + k.weights));
    CHECK_THAT(read_text(dir / "reader/train.log"), Catch::Contains("(from the checkpoint)"));

    // --weights raw: the trained weights; ema / swa: the averages held, or a clear error.
    reader.load_checkpoint(dir / "checkpoint.bin", true, "raw");
    CHECK(reader.weights() == "raw");
    CHECK(params_of(reader) == std::vector<double>(ck.tensors[0].begin(), ck.tensors[0].end()));
    if (k.ema_decay > 0) {
      reader.load_checkpoint(dir / "checkpoint.bin", true, "ema");
      CHECK(params_of(reader) == tr.ema_host());
    } else {
      CHECK_THROWS_WITH(reader.load_checkpoint(dir / "checkpoint.bin", true, "ema"), Catch::Contains("holds no EMA"));
    }
    if (k.swa_every == 0)
      CHECK_THROWS_WITH(reader.load_checkpoint(dir / "checkpoint.bin", true, "swa"), Catch::Contains("holds no SWA"));
    else if (tr.swa_count() == 0)
      CHECK_THROWS_WITH(reader.load_checkpoint(dir / "checkpoint.bin", true, "swa"), Catch::Contains("collected nothing"));
    else {
      reader.load_checkpoint(dir / "checkpoint.bin", true, "swa");
      CHECK(reader.weights() == k.weights);
      CHECK(params_of(reader) == exported);
    }
    CHECK_THROWS_WITH(reader.load_checkpoint(dir / "checkpoint.bin", true, "best"), Catch::Contains("weights must be"));
  }
}

TEST_CASE("a version-1 checkpoint (no state block) still loads: raw weights params-only, full state on resume",
          "[forward][train][recipe]") {
  TrainConfig c = small_config();
  c.iterations = 3;
  c.ema_decay = 0.9;
  const fs::path dir = scratch_dir("ckavg_v1");
  RunLog log;
  Trainer<ModelD> whole(c, log);
  whole.run();
  auto ck = whole.checkpoint();
  ck.state.reset();  // the version-1 encoder path
  const auto bytes = encode_checkpoint(ck);
  std::uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  REQUIRE(version == 1);
  write_file_bytes(dir / "v1.bin", bytes);

  Trainer<ModelD> reader(small_config(), log);
  reader.load_checkpoint(dir / "v1.bin", true);
  CHECK(reader.weights() == "raw");
  CHECK(params_of(reader) == std::vector<double>(ck.tensors[0].begin(), ck.tensors[0].end()));
  CHECK_THROWS_WITH(reader.load_checkpoint(dir / "v1.bin", true, "ema"), Catch::Contains("version-1 checkpoint"));

  // Resume still decodes it by the trainer's own flags, and continues where the writer stopped.
  TrainConfig more = c;
  more.iterations = 5;
  Trainer<ModelD> a(more, log);
  a.load_checkpoint(dir / "v1.bin");
  a.run();
  // The same from the version-2 file: the same trajectory bit for bit.
  write_file_bytes(dir / "v2.bin", encode_checkpoint(whole.checkpoint()));
  Trainer<ModelD> b2(more, log);
  b2.load_checkpoint(dir / "v2.bin");
  b2.run();
  CHECK(params_of(a) == params_of(b2));
  CHECK(a.checkpoint().tensors == b2.checkpoint().tensors);
}

TEST_CASE("reset_averages restarts the EMA from the weights held and empties the SWA (import)", "[forward][train][recipe]") {
  TrainConfig c = small_config();
  c.iterations = 4;
  c.warmdown_iters = 4;
  c.ema_decay = 0.8;
  c.swa_every = 1;
  c.swa_threshold = 0.9;
  RunLog log;
  Trainer<ModelD> tr(c, log);
  tr.run();
  REQUIRE(tr.swa_count() > 0);
  std::vector<double> other(ModelD::num_params);
  for (std::size_t i = 0; i < other.size(); ++i) other[i] = 0.001 * double(i % 97);
  Trainer<ModelD>::Policy::params_from_host(tr.model(), std::span<const double>(other));
  REQUIRE(tr.ema_host() != other);
  tr.reset_averages();
  CHECK(tr.ema_host() == other);
  CHECK(tr.swa_count() == 0);
  CHECK(tr.swa_sum_host() == std::vector<double>(other.size(), 0.0));
  // Its checkpoint, loaded params-only, reads back those weights (swa_of_ema falls back to the EMA).
  const fs::path dir = scratch_dir("ckavg_reset");
  tr.save_checkpoint(dir / "ck.bin");
  Trainer<ModelD> reader(small_config(), log);
  reader.load_checkpoint(dir / "ck.bin", true);
  CHECK(reader.weights() == "ema");
  CHECK(params_of(reader) == other);
}
