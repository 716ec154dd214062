// Late replay and self-distillation after the main loop (TrainConfig; TECHNIQUES.md 7.5, 7.6): the
// FIFO holds the last micro-batches trained under the threshold, a distillation step with alpha 0
// is an ordinary step at its LR, alpha > 0 changes the result, both resume from a checkpoint bit for
// bit, and impossible settings are refused naming the field.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "pgolf/train/replay_buffer.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_fixture.hpp"

using namespace pgolf;
using namespace pgolf::test;
namespace fs = std::filesystem;

namespace {
using ModelD = Gpt<kTrainSpec, double>;
using Model = Gpt<kTrainSpec, float>;

template <class M>
std::vector<double> raw_params(Trainer<M>& tr) {
  const auto ck = tr.checkpoint();  // the raw weights, whatever average the model holds
  return {ck.tensors[0].begin(), ck.tensors[0].end()};
}

// Replay collects from step 2 (multipliers 1, 1, 0.75, 0.5, 0.25 over 5 steps, threshold 0.8), two
// micro-batches per step.
TrainConfig replay_config() {
  TrainConfig c = small_config();
  c.iterations = 5;
  c.warmdown_iters = 3;
  c.micro_batch_tokens = 512;  // two micro-batches per step
  c.replay_batches = 3;
  c.replay_epochs = 2;
  c.replay_threshold = 0.8;
  return c;
}
}  // namespace

TEST_CASE("replay buffer: a FIFO of the last micro-batches, its state round-trips", "[forward][train][post_train]") {
  ReplayBuffer b(2);
  const std::vector<std::int32_t> x1{1, 2}, y1{2, 3}, x2{4, 5}, y2{5, 6}, x3{7, 8}, y3{8, 9};
  b.push(x1, y1);
  b.push(x2, y2);
  b.push(x3, y3);
  REQUIRE(b.size() == 2);
  CHECK(b.at(0).first == x2);  // the oldest was dropped
  CHECK(b.at(1).second == y3);
  ReplayBuffer c(2);
  c.set_state(b.state<float>());
  CHECK(c.state<float>() == b.state<float>());
  CHECK(c.at(0).first == x2);
  CHECK_THROWS_WITH(b.push(std::vector<std::int32_t>{1}, std::vector<std::int32_t>{1}), Catch::Contains("same shape"));
  ReplayBuffer small(1);
  CHECK_THROWS_WITH(small.set_state(b.state<float>()), Catch::Contains("replay_batches must match"));
  std::vector<float> cut = b.state<float>();
  cut.pop_back();
  CHECK_THROWS_WITH(c.set_state(cut), Catch::Contains("replay buffer holds"));
}

TEST_CASE("replay: the FIFO holds the last micro-batches under the threshold, replayed epochs x batches steps",
          "[forward][train][post_train]") {
  const TrainConfig c = replay_config();
  RunLog log;
  Trainer<Model> tr(c, log);
  tr.run();
  // The micro-batches the run read, in order, from a data source of the same config.
  FineWebData data(c, Model::kVocab);
  std::vector<data::Batch> read;
  for (int k = 0; k < 10; ++k) read.push_back(data.next_batch(c, 2));
  // Steps 2, 3, 4 are under 0.8: their 6 micro-batches were pushed, the last 3 kept.
  const auto state = tr.checkpoint().tensors.back();
  ReplayBuffer expected(3);
  for (int k = 4; k < 10; ++k) expected.push(read[std::size_t(k)].x, read[std::size_t(k)].y);
  CHECK(state == expected.state<float>());
  // Replay changed the weights after the main loop: a run without it ends elsewhere.
  TrainConfig off = c;
  off.replay_batches = 0;
  Trainer<Model> plain(off, log);
  plain.run();
  CHECK(raw_params(tr) != raw_params(plain));
}

TEST_CASE("distillation with alpha 0 is an ordinary step at distill_lr_scale; alpha > 0 is not",
          "[forward][train][post_train]") {
  TrainConfig c = small_config();
  c.iterations = 3;
  c.muon_momentum_warmup_steps = 0;  // the momentum Muon keeps in distillation is the one it trains with
  c.ema_decay = 0.9;
  c.distill_steps = 2;
  c.distill_alpha = 0.0;
  c.distill_lr_scale = 1.0;
  RunLog log;
  Trainer<ModelD> distilled(c, log);
  distilled.run();
  TrainConfig longer = c;
  longer.distill_steps = 0;
  longer.iterations = 5;
  Trainer<ModelD> trained(longer, log);
  trained.run();
  CHECK(raw_params(distilled) == raw_params(trained));  // bit for bit: the same data, LR and EMA updates
  CHECK(distilled.ema_host() == trained.ema_host());
  c.distill_alpha = 0.7;
  Trainer<ModelD> kl(c, log);
  kl.run();
  CHECK(raw_params(kl) != raw_params(trained));
}

TEST_CASE("replay and distillation resume from a periodic checkpoint bit for bit", "[forward][train][post_train]") {
  TrainConfig c = replay_config();
  c.ema_decay = 0.8;
  c.distill_steps = 2;
  c.qat_threshold = 0.6;  // on at step 3: replay and distillation run with it
  c.checkpoint_every = 1;
  c.keep_checkpoints = 20;  // 5 steps, then 3 x 2 replay micro-batches and 2 distillation steps
  c.out_dir = scratch_dir("post_train_whole").string();
  RunLog log;
  Trainer<Model> whole(c, log);
  whole.run();
  // Before the FIFO fills, while it fills, after; and the last step's, written before the end phase
  // (a run killed during replay or distillation resumes from it and runs that phase again).
  for (const long long at : {1LL, 3LL, 4LL, 5LL}) {
    INFO("resumed at step " << at);
    TrainConfig rc = c;
    rc.out_dir = scratch_dir("post_train_resumed").string();
    Trainer<Model> resumed(rc, log);
    const fs::path file = whole.checkpoint_dir().periodic_dir() / format("step_%08lld.bin", at);
    CHECK_FALSE(CheckpointDir::peek_header(file).post_trained);
    CHECK(CheckpointDir::peek_header(file).step == at);
    resumed.load_checkpoint(file);
    CHECK(resumed.post_train_pending());
    resumed.run();
    CHECK_FALSE(resumed.post_train_pending());
    CHECK(raw_params(resumed) == raw_params(whole));
    CHECK(resumed.ema_host() == whole.ema_host());
    CHECK(resumed.checkpoint().tensors == whole.checkpoint().tensors);
  }
  // Inside the end phase: in replay's first epoch, at the end of it, in the second, after replay,
  // in distillation (its teacher, the EMA when it began, travels with the checkpoint: the EMA has
  // moved on since).
  for (const long long end : {1LL, 3LL, 4LL, 6LL, 7LL}) {
    INFO("resumed " << end << " steps into the end phase");
    const fs::path file = whole.checkpoint_dir().periodic_path(5, end);
    REQUIRE(fs::exists(file));
    const auto ck = decode_checkpoint<float>(read_file_bytes(file), table_fingerprint(Model::param_table));
    REQUIRE(ck.state.has_value());
    CHECK(ck.state->end_steps == end);
    CHECK(ck.state->teacher == (end > 6));
    CHECK_FALSE(ck.state->post_trained);
    TrainConfig rc = c;
    rc.out_dir = scratch_dir("post_train_resumed_end").string();
    Trainer<Model> resumed(rc, log);
    resumed.load_checkpoint(file);
    CHECK(resumed.step() == 5);
    CHECK(resumed.end_steps() == end);
    CHECK(resumed.post_train_pending());
    resumed.run();
    CHECK_FALSE(resumed.post_train_pending());
    CHECK(resumed.end_steps() == 0);
    CHECK(raw_params(resumed) == raw_params(whole));
    CHECK(resumed.ema_host() == whole.ema_host());
    CHECK(resumed.checkpoint().tensors == whole.checkpoint().tensors);
    // The rest of the phase wrote the same checkpoints as the run never interrupted (but the clock).
    const auto fp = table_fingerprint(Model::param_table);
    const auto again = decode_checkpoint<float>(read_file_bytes(resumed.checkpoint_dir().periodic_path(5, 8)), fp);
    const auto there = decode_checkpoint<float>(read_file_bytes(whole.checkpoint_dir().periodic_path(5, 8)), fp);
    CHECK((again.tensors == there.tensors && again.counters == there.counters));
    CHECK(again.state->end_loss == there.state->end_loss);  // the epoch's loss sum: the same additions
    CHECK((again.data_file == there.data_file && again.data_pos == there.data_pos));
  }
  {
    // A run whose end phase is shorter than the checkpoint's position cannot continue it.
    TrainConfig rc = c;
    rc.distill_steps = 0;
    rc.out_dir = scratch_dir("post_train_resumed_short").string();
    Trainer<Model> resumed(rc, log);
    CHECK_THROWS_WITH(resumed.load_checkpoint(whole.checkpoint_dir().periodic_path(5, 7)),
                      Catch::Contains("checkpoint is 7 steps into its end phase (in distillation); this run's end "
                                      "phase has 6 replay and 0 distillation steps"));
    // More steps after it: the phase it was inside is dropped, training goes on from step 5.
    TrainConfig longer = c;
    longer.iterations = 7;
    longer.out_dir = scratch_dir("post_train_resumed_longer").string();
    Trainer<Model> more(longer, log);
    more.load_checkpoint(whole.checkpoint_dir().periodic_path(5, 7));
    CHECK(more.end_steps() == 0);
    CHECK(more.checkpoint().tensors.size() == whole.checkpoint().tensors.size());  // no teacher kept
  }
  // The run's final checkpoint says the end phase ran: nothing is pending when it is loaded.
  REQUIRE(whole.checkpoint().state.has_value());
  CHECK(whole.checkpoint().state->post_trained);
  const fs::path final_file = fs::path(c.out_dir) / "final.bin";
  write_file_bytes(final_file, encode_checkpoint(whole.checkpoint()));
  CHECK(CheckpointDir::peek_header(final_file).post_trained);
  Trainer<Model> again(c, log);
  again.load_checkpoint(final_file);
  CHECK_FALSE(again.post_train_pending());
}

TEST_CASE("inside the budget, a resumed end phase counts the time its checkpoint says it had taken",
          "[forward][train][post_train]") {
  TrainConfig c = replay_config();
  c.max_wallclock_seconds = 3600;  // never reached: only the clock's bookkeeping is under test
  c.post_train_seconds = 600;
  // Distillation: replay would collect nothing (with a wall-clock cap the LR multiplier follows the
  // clock and stays 1 this far from it).
  c.replay_batches = 0;
  c.ema_decay = 0.8;
  c.distill_steps = 5;
  c.checkpoint_every = 2;
  c.keep_checkpoints = 20;
  c.out_dir = scratch_dir("post_train_inside").string();
  RunLog log;
  Trainer<Model> whole(c, log);
  whole.run();
  const fs::path file = whole.checkpoint_dir().periodic_path(5, 4);
  const auto ck = decode_checkpoint<float>(read_file_bytes(file), table_fingerprint(Model::param_table));
  REQUIRE(ck.state.has_value());
  CHECK(ck.state->end_steps == 4);
  CHECK(ck.state->teacher);
  CHECK(ck.state->end_ms > 0);  // 4 distillation steps took time
  CHECK(whole.train_ms() >= ck.train_ms + ck.state->end_ms);  // the phase's time counted in the run's
  TrainConfig rc = c;
  rc.out_dir = scratch_dir("post_train_inside_resumed").string();
  Trainer<Model> resumed(rc, log);
  resumed.load_checkpoint(file);
  CHECK(resumed.train_ms() == ck.train_ms);  // the main loop's time; the phase's travels apart
  resumed.run();
  CHECK(resumed.train_ms() >= ck.train_ms + ck.state->end_ms);  // the earlier process's phase time included
  CHECK(resumed.end_steps() == 0);
}

TEST_CASE("the last step's checkpoint is written before the end phase when the period skips it",
          "[forward][train][post_train]") {
  TrainConfig c = replay_config();  // 5 steps
  c.checkpoint_every = 2;           // periodic at 2 and 4; the end phase needs one at 5
  c.keep_checkpoints = 10;
  c.out_dir = scratch_dir("post_train_last_step").string();
  RunLog log;
  Trainer<Model> whole(c, log);
  whole.run();
  const fs::path last = whole.checkpoint_dir().periodic_path(5);
  REQUIRE(fs::exists(last));
  CHECK(fs::exists(whole.checkpoint_dir().periodic_path(4)));
  CHECK_FALSE(fs::exists(whole.checkpoint_dir().periodic_path(3)));
  TrainConfig rc = c;
  rc.out_dir = scratch_dir("post_train_last_step_resumed").string();
  Trainer<Model> resumed(rc, log);
  resumed.load_checkpoint(last);
  resumed.run();
  CHECK(raw_params(resumed) == raw_params(whole));
  // Without an end phase the last step gets no extra checkpoint.
  TrainConfig plain = c;
  plain.replay_batches = 0;
  plain.out_dir = scratch_dir("post_train_last_step_plain").string();
  Trainer<Model> p(plain, log);
  p.run();
  CHECK_FALSE(fs::exists(p.checkpoint_dir().periodic_path(5)));
  CHECK_FALSE(p.post_train_pending());
}

TEST_CASE("replay and distillation settings that cannot work are refused, naming the field",
          "[forward][train][post_train][bad_input]") {
  auto error_of = [](TrainConfig c) {
    try {
      c.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  TrainConfig c = small_config();
  c.distill_steps = 5;
  CHECK_THAT(error_of(c), Catch::Contains("distill_steps is 5 but the teacher is the EMA"));
  c = small_config();
  c.replay_batches = 4;
  c.post_train_seconds = 10;
  c.max_wallclock_seconds = 0;
  CHECK_THAT(error_of(c), Catch::Contains("max_wallclock_seconds (0) must exceed it"));
  c.replay_batches = 0;
  c.max_wallclock_seconds = 60;
  CHECK_THAT(error_of(c), Catch::Contains("neither replay (replay_batches) nor distillation"));
  c = small_config();
  c.replay_epochs = 0;
  CHECK_THAT(error_of(c), Catch::Contains("replay_epochs must be >= 1"));
  c = small_config();
  c.ema_decay = 0.9;
  c.distill_steps = 1;
  c.distill_alpha = 1.5;
  CHECK_THAT(error_of(c), Catch::Contains("distill_alpha must be in [0, 1]"));
}

TEST_CASE("replay inside the wall-clock budget: the main loop leaves post_train_seconds and the log says so",
          "[forward][train][post_train]") {
  TrainConfig c = replay_config();
  c.iterations = 1000000;  // the wall clock ends the run
  c.max_wallclock_seconds = 2.0;
  c.post_train_seconds = 1.0;
  c.warmdown_iters = 1000000;  // by wall clock: the multiplier falls from the start, replay collects
  c.replay_threshold = 1.0;
  RunLog log;
  Trainer<Model> tr(c, log);
  const auto r = tr.run();
  CHECK(r.stopped_early);
  // The main loop stopped at about 1 s of training; replay ran inside the remaining second (its
  // time counted), so the clock ends at or a step past 2 s, not far beyond.
  CHECK(r.train_ms >= 1000.0);
  CHECK(r.train_ms < 4000.0);
}
