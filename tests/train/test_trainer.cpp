// Trainer<Model>: reproducibility, accumulation, resume, the wall-clock cap, learning beyond the
// unigram baseline, export round trip, and the bad inputs that must stop a run with a clear message.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>

#include "pgolf/data/shard.hpp"
#include "pgolf/export/artifact.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_fixture.hpp"

using namespace pgolf;
using namespace pgolf::test;
namespace fs = std::filesystem;

namespace {
using Model = Gpt<kTrainSpec, float>;
constexpr GptSpec kOtherSpec{.vocab = 1024, .dim = 64, .depth = {.layers = 3}, .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};
// Two blocks; the loop-on schedule runs both twice, with per-virtual-layer scalars.
constexpr GptSpec kLoopSpec{.vocab = 1024,
                            .dim = 64,
                            .depth = {.layers = 2, .looped = repeat_span(2, 0, 1, 2), .sharing = Sharing::matrices},
                            .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};
constexpr GptSpec kWideSpec{.vocab = 2048, .dim = 64, .depth = {.layers = 2}, .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};

template <class Result>
std::vector<double> losses(const Result& r) {
  std::vector<double> v;
  for (const auto& t : r.train) v.push_back(t.train_loss);
  return v;
}

}  // namespace

TEST_CASE("the same seed gives the same losses bit for bit; another seed does not", "[forward][train]") {
  RunLog log;
  auto run = [&](std::uint64_t seed) {
    TrainConfig c = small_config();
    c.seed = seed;
    Trainer<Model> tr(c, log);
    return losses(tr.run());
  };
  const auto a = run(1337), b = run(1337), other = run(42);
  REQUIRE(a.size() == 4);
  CHECK(a == b);  // exact equality of doubles
  CHECK(a != other);
}

TEST_CASE("muon_ns_bf16 reaches Muon: a zero-initialised matrix's first update is lr times bf16 values",
          "[forward][train]") {
  RunLog log;
  const ParamInfo* proj = find_param(Model::param_table, "blocks.0.attn.proj.weight");  // zeros at init, square
  REQUIRE(proj);
  auto bf16_fraction = [&](bool ns_bf16) {
    TrainConfig c = small_config();
    c.iterations = 1;
    c.muon_ns_bf16 = ns_bf16;
    Trainer<Model> tr(c, log);
    tr.run();
    std::size_t on_grid = 0;
    for (std::size_t i = 0; i < proj->numel(); ++i) {
      const float x = -tr.model().params()[proj->offset + i] / float(c.matrix_lr);  // W = -lr * NS(U)
      REQUIRE(x != 0.0f);
      if (std::abs(round_to_bf16(x) - x) <= 4e-7f * std::abs(x)) ++on_grid;  // a bf16 value, up to W's rounding
    }
    return double(on_grid) / double(proj->numel());
  };
  CHECK(bf16_fraction(true) == 1.0);
  CHECK(bf16_fraction(false) < 0.1);
}

TEST_CASE("deterministic reaches the attention choice a model is built with", "[forward][train]") {
  RunLog log;
  for (const bool on : {false, true}) {  // true last: the process default stays as it was
    TrainConfig c = small_config();
    c.iterations = 1;
    c.deterministic = on;
    Trainer<Model> tr(c, log);
    CHECK(attention_deterministic() == on);
  }
}

TEST_CASE("gradient accumulation gives the gradient of the whole batch", "[forward][train]") {
  using ModelD = Gpt<kTrainSpec, double>;
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 1;
  c.micro_batch_tokens = 256;  // 4 micro-steps of 4 sequences
  REQUIRE(c.grad_accum_steps() == 4);
  Trainer<ModelD> tr(c, log);
  const auto r = tr.run();

  // The same four micro-batches as one batch of 16 sequences, at the initial weights.
  data::TokenLoader loader(data::find_shards(c.data_path, "train"), 1024);
  std::vector<std::int32_t> x, y;
  for (int a = 0; a < 4; ++a) {
    const auto b = loader.next_batch(c.train_batch_tokens, c.train_seq_len, 4);
    x.insert(x.end(), b.x.begin(), b.x.end());
    y.insert(y.end(), b.y.begin(), b.y.end());
  }
  ModelD whole(16, c.train_seq_len);
  whole.init(c.seed);
  const double loss = whole.forward(x, y);
  whole.zero_grad();
  whole.backward();
  CHECK(r.train[0].train_loss == Approx(loss).epsilon(1e-12));
  double num = 0, den = 0;
  for (std::size_t i = 0; i < whole.grads().size(); ++i) {
    const double d = whole.grads()[i] - tr.model().grads()[i];
    num += d * d;
    den += whole.grads()[i] * whole.grads()[i];
  }
  CHECK(std::sqrt(num / den) < 1e-12);
}

TEST_CASE("accumulation count: fewest micro-steps that fit and divide the batch", "[forward][train]") {
  TrainConfig c;
  c.train_seq_len = 10;
  c.train_batch_tokens = 120;  // 12 sequences
  c.micro_batch_tokens = 50;   // 5 fit -> 3 micro-steps of 4
  CHECK(c.grad_accum_steps() == 3);
  CHECK(c.micro_batch_rows() == 4);
  c.train_batch_tokens = 70;   // 7 sequences, 3 fit -> 7 micro-steps of 1
  c.micro_batch_tokens = 30;
  CHECK(c.grad_accum_steps() == 7);
  c.micro_batch_tokens = 5;    // less than one sequence still runs one sequence at a time
  CHECK(c.micro_batch_rows() == 1);
  c.micro_batch_tokens = 1000;
  CHECK(c.grad_accum_steps() == 1);
}

TEST_CASE("a looped model switches its schedule mid-run and resumes exactly across the switch", "[forward][train]") {
  using Looped = Gpt<kLoopSpec, float>;
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 8;
  c.warmdown_iters = 0;  // a constant LR: a shorter first part follows the same schedule
  c.loop_enable_at = 0.5;
  Trainer<Looped> straight(c, log);
  CHECK(straight.model().phase() == 0);
  const auto all = losses(straight.run());
  CHECK(straight.model().phase() == 1);
  REQUIRE(all.size() == 8);
  for (double l : all) REQUIRE(std::isfinite(l));
  CHECK(all.back() < all.front());

  // Switching earlier changes the run from the switch on, and only from there.
  TrainConfig early = c;
  early.loop_enable_at = 0.25;
  Trainer<Looped> other(early, log);
  const auto e = losses(other.run());
  CHECK(std::vector<double>(e.begin(), e.begin() + 2) == std::vector<double>(all.begin(), all.begin() + 2));
  CHECK(e[2] != all[2]);

  // Checkpoints before the switch (step 3) and after it (step 6), each resumed into the 8-step run.
  for (const auto [steps, at] : {std::pair{3LL, 1.0}, std::pair{6LL, 0.66}}) {
    const fs::path ckpt = scratch_dir("trainer_loop_resume") / "checkpoint.bin";
    TrainConfig part = c;
    part.iterations = steps;
    part.loop_enable_at = at;  // the switch at step 4 of the full run, or after this part
    {
      Trainer<Looped> first(part, log);
      first.run();
      first.save_checkpoint(ckpt);
    }
    Trainer<Looped> second(c, log);
    second.load_checkpoint(ckpt);
    CHECK(second.model().phase() == (steps >= 4 ? 1 : 0));
    const auto tail = losses(second.run());
    INFO("resumed at step " << steps);
    CHECK(tail == std::vector<double>(all.begin() + steps, all.end()));
    CHECK(std::equal(second.model().params().begin(), second.model().params().end(),
                     straight.model().params().begin()));
  }

  // The switch point must be a fraction, and only a model with two schedules has one.
  TrainConfig bad = c;
  bad.loop_enable_at = 1.5;
  CHECK_THROWS_WITH((Trainer<Looped>(bad, log)), Catch::Contains("loop_enable_at must be a fraction"));
  CHECK_THROWS_WITH((Trainer<Model>(c, log)), Catch::Contains("single depth schedule"));
}

TEST_CASE("resuming from a checkpoint continues exactly", "[forward][train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 6;
  c.warmdown_iters = 0;  // a constant LR, so stopping at step 3 is the same schedule as running on
  Trainer<Model> straight(c, log);
  const auto all = losses(straight.run());

  const fs::path ckpt = scratch_dir("trainer_resume") / "checkpoint.bin";
  TrainConfig half = c;
  half.iterations = 3;
  {
    Trainer<Model> first(half, log);
    first.run();
    first.save_checkpoint(ckpt);
  }
  Trainer<Model> second(c, log);
  second.load_checkpoint(ckpt);
  CHECK(second.step() == 3);
  const auto tail = losses(second.run());
  REQUIRE(tail.size() == 3);
  CHECK(tail == std::vector<double>(all.begin() + 3, all.end()));
  CHECK(std::equal(second.model().params().begin(), second.model().params().end(), straight.model().params().begin()));

  // A checkpoint of another variant, or a damaged one, is refused.
  auto bytes = read_file_bytes(ckpt);
  bytes[bytes.size() / 2] ^= 1;
  write_file_bytes(ckpt.parent_path() / "bad.bin", bytes);
  CHECK_THROWS_WITH(second.load_checkpoint(ckpt.parent_path() / "bad.bin"), Catch::Contains("checksum mismatch"));
  using Other = Gpt<kOtherSpec, float>;
  Trainer<Other> other(c, log);
  CHECK_THROWS_WITH(other.load_checkpoint(ckpt), Catch::Contains("different model variant"));
}

TEST_CASE("the wall-clock cap stops the run early and validates at the stop", "[forward][train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 1000;
  c.max_wallclock_seconds = 1e-6;
  Trainer<Model> tr(c, log);
  const auto r = tr.run();
  CHECK(r.stopped_early);
  CHECK(r.steps == 1);
  REQUIRE(r.val.size() == 1);
  CHECK(r.val.back().step == 1);
}

TEST_CASE("validation cadence: step 0, every val_loss_every steps, and the last step", "[forward][train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 5;
  c.val_loss_every = 2;
  Trainer<Model> tr(c, log);
  const auto r = tr.run();
  std::vector<long long> steps;
  for (const auto& v : r.val) steps.push_back(v.step);
  CHECK(steps == std::vector<long long>{0, 2, 4, 5});
}

// Cross-entropy of the best context-free predictor of the training shard: its unigram entropy.
static double unigram_entropy_nats(const fs::path& shard) {
  const data::Shard s(shard);
  std::map<int, double> count;
  for (std::size_t i = 0; i < s.size(); ++i) count[s[i]] += 1;
  double h = 0;
  for (const auto& [tok, n] : count) {
    const double p = n / double(s.size());
    h -= p * std::log(p);
  }
  return h;
}

TEST_CASE("training beats the unigram entropy of the training shard within a few hundred steps", "[forward][train]") {
  const double unigram =
      unigram_entropy_nats(fs::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini" / "fineweb_train_000000.bin");
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 200;
  c.warmdown_iters = 50;
  c.train_batch_tokens = 2048;
  c.micro_batch_tokens = 2048;
  c.val_tokens = 16385;
  Trainer<Model> tr(c, log);
  const auto r = tr.run();
  const double val_loss = r.val.back().val_loss;
  INFO("unigram entropy " << unigram << " nats, val_loss after " << r.steps << " steps " << val_loss);
  CHECK(unigram > 4.0);  // sanity: FineWeb sp1024 is far from trivial
  CHECK(val_loss < unigram - 0.3);
}

TEST_CASE("export round trip scores within 0.01 bpb of the trained model", "[forward][train][export]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 30;
  c.warmdown_iters = 10;
  c.val_tokens = 16385;
  Trainer<Model> tr(c, log);
  const auto r = tr.run();
  const double before = r.val.back().val_bpb;
  const std::vector<float> trained(tr.model().params().begin(), tr.model().params().end());
  for (Codec codec : {Codec::zlib, Codec::zstd}) {
    const auto bytes = encode_artifact(Model::param_table, std::span<const float>(trained), codec, codec == Codec::zstd ? 9 : -1);
    decode_artifact(std::span<const std::uint8_t>(bytes), Model::param_table, tr.model().params());
    const double after = tr.validate().val_bpb();
    INFO(to_string(codec) << ": " << before << " -> " << after << " bpb, " << bytes.size() << " bytes");
    CHECK(std::abs(after - before) < 0.01);
    CHECK(after != before);  // the weights really went through the quantiser
  }
}

namespace {
// A model whose loss turns NaN from its third forward pass on (a diverging run, made certain).
struct DivergingModel : Model {
  using Model::Model;
  int calls = 0;
  double forward(std::span<const std::int32_t> ids, std::span<const std::int32_t> targets) {
    const double l = Model::forward(ids, targets);
    return ++calls >= 3 ? std::nan("") : l;
  }
};
}  // namespace

TEST_CASE("bad inputs stop the run with a message naming the problem", "[forward][train][bad_input]") {
  RunLog log;
  SECTION("NaN loss: stop with the step number") {
    TrainConfig c = small_config();
    c.iterations = 10;
    Trainer<DivergingModel> tr(c, log);
    CHECK_THROWS_WITH(tr.run(), Catch::Contains("training diverged at step 3/10: train_loss is nan"));
  }
  SECTION("batch tokens not divisible by the sequence length") {
    TrainConfig c = small_config();
    c.train_batch_tokens = 1000;
    CHECK_THROWS_WITH(Trainer<Model>(c, log),
                      Catch::Contains("train_batch_tokens (1000) must be divisible by train_seq_len (64)"));
  }
  SECTION("impossible values") {
    TrainConfig c = small_config();
    c.iterations = -1;
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("iterations must be >= 0"));
    c = small_config();
    c.train_seq_len = 0;
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("train_seq_len must be positive"));
    c = small_config();
    c.matrix_lr = std::nan("");
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("matrix_lr must be a finite number"));
  }
  SECTION("missing data directory") {
    TrainConfig c = small_config();
    c.data_path = "/nonexistent/pgolf-data";
    CHECK_THROWS_WITH(Trainer<Model>(c, log), Catch::Contains("/nonexistent/pgolf-data is not a directory"));
  }
  SECTION("tokenizer and spec disagree on the vocabulary") {
    using Wide = Gpt<kWideSpec, float>;
    CHECK_THROWS_WITH(Trainer<Wide>(small_config(), log), Catch::Contains("1024") && Catch::Contains("2048"));
  }
  SECTION("a corrupt training shard is named") {
    const fs::path dir = scratch_dir("trainer_corrupt");
    fs::copy(fs::path(small_config().data_path) / "fineweb_val_000000.bin", dir / "fineweb_val_000000.bin");
    auto bytes = read_file_bytes(fs::path(small_config().data_path) / "fineweb_train_000000.bin");
    bytes[0] ^= 0xff;  // magic
    write_file_bytes(dir / "fineweb_train_000000.bin", bytes);
    TrainConfig c = small_config();
    c.data_path = dir.string();
    Trainer<Model> tr(c, log);
    CHECK_THROWS_WITH(tr.run(), Catch::Contains("fineweb_train_000000.bin") && Catch::Contains("magic"));
  }
}
