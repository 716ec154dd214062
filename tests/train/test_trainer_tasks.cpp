// The one Trainer with another model family and data source: PRISM on a toy task with AdamW for
// every group and the warm-up + cosine schedule, resumed from a checkpoint bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "pgolf/data/toy_tasks.hpp"
#include "pgolf/model/prism.hpp"
#include "pgolf/train/trainer.hpp"

using namespace pgolf;

namespace {
constexpr PrismSpec kTaskPrism{.vocab = 12, .d_model = 16, .layers = 2, .num_rates = 4, .num_slots = 4, .d_mem = 8};
using Model = Prism<kTaskPrism, float>;
using Tr = Trainer<Model, data::ToyTaskData>;

TrainConfig task_config(long long iterations) {
  TrainConfig c;
  c.iterations = iterations;
  c.max_wallclock_seconds = 0;
  c.val_loss_every = 0;
  c.train_log_every = 0;
  c.train_seq_len = 9;
  c.train_batch_tokens = 16 * 9;
  c.micro_batch_tokens = 8 * 9;  // two micro-steps
  c.optimizer = OptimizerKind::adamw;
  c.weight_decay = 0.01;
  c.lr_schedule = LrSchedule::warmup_cosine;
  c.warmup_iters = 4;
  c.matrix_lr = c.scalar_lr = c.tied_embed_lr = c.embed_lr = c.head_lr = 3e-3;
  c.beta2 = 0.999;
  c.grad_clip_norm = 1.0;
  c.seed = 3;
  return c;
}
data::ToyTaskData induction() {
  data::ToyTaskOptions o;
  o.eval_sequences = 64;
  return data::ToyTaskData(data::ToyTask::induction, o, 3);
}
}  // namespace

TEST_CASE("warm-up + cosine schedule: (s+1)/w, then cosine to 0", "[forward][train]") {
  const WarmupCosineSchedule s{.iterations = 100, .warmup = 10};
  CHECK(s.multiplier(0) == Approx(0.1));
  CHECK(s.multiplier(9) == Approx(1.0));
  CHECK(s.multiplier(10) == Approx(1.0));
  CHECK(s.multiplier(55) == Approx(0.5));
  CHECK(s.multiplier(100) == Approx(0.0).margin(1e-15));
  TrainConfig c;
  c.iterations = 400;
  CHECK(c.warmup_steps() == 40);
  c.iterations = 5;
  CHECK(c.warmup_steps() == 1);
}

TEST_CASE("PRISM trains through the Trainer on a toy task (AdamW, cosine) and resumes exactly", "[forward][train][prism]") {
  RunLog log;
  Tr straight(task_config(40), log, induction());
  const auto before = straight.validate();
  const auto r = straight.run();
  REQUIRE(r.steps == 40);
  const auto after = straight.validate();
  CHECK(std::isfinite(after.loss));
  CHECK(after.scored == 64);
  CHECK(after.loss < before.loss);  // from ~ln 12 toward the shown values
  CHECK(std::isnan(after.val_bpb()));

  // Resume: a constant learning rate, so a 20-step run is the first half of the 40-step one; the
  // checkpoint carries the AdamW state of every group (the matrix group included) and the task's
  // position in its stream.
  TrainConfig flat = task_config(40);
  flat.lr_schedule = LrSchedule::warmdown;
  flat.warmdown_iters = 0;
  Tr whole(flat, log, induction());
  whole.run();
  const auto ck = std::filesystem::temp_directory_path() / "pgolf_test_prism_resume.bin";
  {
    TrainConfig half = flat;
    half.iterations = 20;
    Tr part(half, log, induction());
    part.run();
    part.save_checkpoint(ck);
  }
  Tr resumed(flat, log, induction());
  resumed.load_checkpoint(ck);
  CHECK(resumed.step() == 20);
  resumed.run();
  const auto a = whole.model().params(), b = resumed.model().params();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));  // bit for bit
  std::filesystem::remove(ck);
}
