// PRISM's training levers: the curriculum schedule and the task mixture it weights, token
// recycling's weights and its wiring through the Trainer.
#include <catch2/catch.hpp>

#include <array>

#include "pgolf/data/toy_tasks.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/model/prism.hpp"
#include "pgolf/train/curriculum.hpp"
#include "pgolf/train/token_recycling.hpp"
#include "pgolf/train/trainer.hpp"

using namespace pgolf;

TEST_CASE("curriculum: phases by step, the focus weight multiplied by the strength", "[forward][train][levers]") {
  const CurriculumSchedule c{.total_steps = 1000};
  CHECK(c.phase(0) == ExpertKind::neural);
  CHECK(c.phase(100) == ExpertKind::neural);
  CHECK(c.phase(400) == ExpertKind::memory);
  CHECK(c.phase(900) == ExpertKind::symbolic);
  CHECK(c.weight(0.5, ExpertKind::memory, 400) == 1.5);
  CHECK(c.weight(0.5, ExpertKind::neural, 400) == 0.5);
  CHECK_THROWS_WITH((CurriculumSchedule{.total_steps = 10, .t1_frac = 0.8, .t2_frac = 0.5}.validate()),
                    Catch::Contains("t1_frac <= t2_frac"));
}

TEST_CASE("task mixture: sources drawn by (curriculum) weight, padded to the longest task", "[forward][train][levers]") {
  const std::vector<data::MixtureSource> src{{data::ToyTask::copy, ExpertKind::neural, 1.0},
                                             {data::ToyTask::induction, ExpertKind::memory, 1.0},
                                             {data::ToyTask::reasoning, ExpertKind::symbolic, 1.0}};
  data::ToyTaskMixture plain(src, {}, 1), cur(src, {}, 1, CurriculumSchedule{.total_steps = 300});
  CHECK(plain.vocab() == 20);
  CHECK(plain.seq_len() == 17);
  std::array<int, 3> a{}, b{};
  for (std::uint64_t i = 0; i < 6000; ++i) {
    ++a[plain.source_of(i, 0)];
    ++b[cur.source_of(i, 150)];  // memory phase: induction weighted 3 of 5
  }
  for (int k = 0; k < 3; ++k) CHECK(a[std::size_t(k)] == Approx(2000).margin(150));
  CHECK(b[1] == Approx(3600).margin(150));
  CHECK(b[0] == Approx(1200).margin(120));
  TrainConfig c;
  c.train_seq_len = 17;
  c.train_batch_tokens = 8 * 17;
  const auto batch = cur.next_batch(c, 1);
  REQUIRE(batch.x.size() == 8 * 17);
  for (int r = 0; r < 8; ++r) {
    int last_scored = -1;
    for (int t = 0; t < 17; ++t)
      if (batch.y[std::size_t(r * 17 + t)] >= 0) last_scored = t;
    CHECK(last_scored >= 8);  // copy scores 8..15, induction 8, reasoning 9
  }
}

TEST_CASE("token recycling: rare loss levels up-weighted, unscored tokens 0, strength 0 uniform", "[forward][train][levers]") {
  TokenRecycler r(1.0);
  std::vector<float> losses(10, 0.1f);
  losses[9] = 0.9f;
  std::vector<std::int32_t> targets(10, 1);
  targets[0] = -1;
  auto w = r.weights(std::span<const float>(losses), std::span<const std::int32_t>(targets));
  CHECK(w[0] == 0.0f);
  CHECK(w[1] == Approx(1.0));  // all buckets alike before any update
  for (int s = 0; s < 50; ++s) r.update(std::span<const float>(losses), std::span<const std::int32_t>(targets));
  w = r.weights(std::span<const float>(losses), std::span<const std::int32_t>(targets));
  CHECK(w[9] > w[1]);  // the hard token's bucket is the rarer one
  TokenRecycler off(0.0);
  const auto uniform = off.weights(std::span<const float>(losses), std::span<const std::int32_t>(targets));
  for (std::size_t i = 1; i < uniform.size(); ++i) CHECK(uniform[i] == 1.0f);
  const std::vector<std::int32_t> none(10, -1);
  r.update(std::span<const float>(losses), std::span<const std::int32_t>(none));  // all masked: no crash
  CHECK_THROWS_WITH(TokenRecycler(1.5), Catch::Contains("strength must be in [0, 1]"));
}

namespace {
constexpr PrismSpec kLeverPrism{.vocab = 257, .d_model = 16, .layers = 2, .num_rates = 4, .num_slots = 4, .d_mem = 8};
constexpr GptSpec kLeverGpt{.vocab = 257, .dim = 32, .depth = {.layers = 1}, .attention = {.heads = 2, .kv_heads = 2, .rope_dims = 16}};
TrainConfig lever_config() {
  TrainConfig c;
  // Long enough for the running maximum (from 1.0, EMA 0.99) to pass some losses: before that every
  // loss sits in the top bucket and the weights are uniform, as in the reference. Bytes of text
  // (mini_lm) have widely spread losses; a toy task at chance would not.
  c.iterations = 150;
  c.max_wallclock_seconds = 0;
  c.val_loss_every = 0;
  c.train_log_every = 0;
  c.train_seq_len = 16;
  c.train_batch_tokens = 8 * 16;
  c.micro_batch_tokens = 8 * 16;
  c.optimizer = OptimizerKind::adamw;
  c.lr_schedule = LrSchedule::warmup_cosine;
  c.matrix_lr = c.scalar_lr = c.tied_embed_lr = 1e-2;
  c.token_recycling = 1.0;
  return c;
}
}  // namespace

TEST_CASE("token recycling through the Trainer: a PRISM run changes; a model without weights is refused",
          "[forward][train][levers]") {
  RunLog log;
  data::ToyTaskOptions o;
  o.eval_sequences = 32;
  o.mini_lm_seq = 16;
  o.corpus_path = std::string(PGOLF_DATA_DIR) + "/text/fineweb_val_prefix_docs.txt";
  auto run = [&](double strength) {
    TrainConfig c = lever_config();
    c.token_recycling = strength;
    Trainer<Prism<kLeverPrism, float>, data::ToyTaskData> tr(c, log, data::ToyTaskData(data::ToyTask::mini_lm, o, 1));
    tr.run();
    return std::vector<float>(tr.model().params().begin(), tr.model().params().end());
  };
  const auto plain = run(0.0), recycled = run(1.0), again = run(1.0);
  CHECK(plain != recycled);
  CHECK(recycled == again);
  CHECK_THROWS_WITH((Trainer<Gpt<kLeverGpt, float>, data::ToyTaskData>(lever_config(), log,
                                                                        data::ToyTaskData(data::ToyTask::mini_lm, o, 1))),
                    Catch::Contains("token_recycling needs a model that takes per-token loss weights"));
}
