// Periodic checkpoints (train/checkpoint_dir.hpp): the Trainer writes every checkpoint_every steps,
// keeps the newest K, and a run interrupted mid-way resumes from the latest to the same weights bit
// for bit; damaged or stale files are skipped or removed, never loaded.
#include <catch2/catch.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "pgolf/train/checkpoint_dir.hpp"
#include "pgolf/train/trainer.hpp"
#include "train_fixture.hpp"

using namespace pgolf;
using namespace pgolf::test;
namespace fs = std::filesystem;

namespace {
using Model = Gpt<kTrainSpec, float>;

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};
}  // namespace

TEST_CASE("a run interrupted mid-way resumes from its latest checkpoint bit for bit", "[forward][train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 7;
  c.warmdown_iters = 4;  // the LR changes every step of the second half: the schedule must resume too
  c.checkpoint_every = 2;
  c.keep_checkpoints = 2;
  c.out_dir = scratch_dir("checkpoints_whole").string();
  Trainer<Model> whole(c, log);
  whole.run();
  // Steps 2, 4, 6 were written; the newest two remain.
  const auto kept = whole.checkpoint_dir().periodic();
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].step == 4);
  CHECK(kept[1].step == 6);

  c.out_dir = scratch_dir("checkpoints_interrupted").string();
  {
    Trainer<Model> first(c, log);
    first.on_step([](long long step, double) {
      if (step == 5) throw Interrupted();  // dies after step 5, whose state was never saved
    });
    CHECK_THROWS_AS(first.run(), Interrupted);
  }
  Trainer<Model> resumed(c, log);
  const auto latest = resumed.checkpoint_dir().latest<float>(table_fingerprint(Model::param_table), [](const std::string&) {});
  REQUIRE(latest.has_value());
  CHECK(latest->filename() == "step_00000004.bin");
  resumed.load_checkpoint(*latest);
  CHECK(resumed.step() == 4);
  resumed.run();
  CHECK(resumed.step() == 7);
  const auto a = whole.model().params(), b = resumed.model().params();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
}

TEST_CASE("latest() skips a damaged newest checkpoint and prefers the final one on a tie", "[forward][train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 3;
  c.checkpoint_every = 1;
  c.keep_checkpoints = 3;
  c.out_dir = scratch_dir("checkpoints_latest").string();
  Trainer<Model> tr(c, log);
  tr.run();
  const CheckpointDir dir = tr.checkpoint_dir();
  const auto fp = table_fingerprint(Model::param_table);
  std::vector<std::string> warnings;
  auto warn = [&](const std::string& w) { warnings.push_back(w); };
  CHECK(dir.latest<float>(fp, warn)->filename() == "step_00000003.bin");
  dir.write_final(encode_checkpoint(tr.checkpoint()));
  CHECK(dir.latest<float>(fp, warn)->filename() == "checkpoint.bin");  // same step: the final one
  CHECK(warnings.empty());

  // Truncate the two step-3 files: the step-2 checkpoint is the latest that loads.
  for (const fs::path& p : {dir.final_path(), dir.periodic_path(3)}) fs::resize_file(p, fs::file_size(p) / 2);
  CHECK(dir.latest<float>(fp, warn)->filename() == "step_00000002.bin");
  CHECK(warnings.size() == 2);
  // A checkpoint of another model is not "latest" either.
  CHECK_FALSE(dir.latest<float>(fp + 1, [](const std::string&) {}).has_value());
  // Another precision is refused by the decoder, so it is skipped as well.
  CHECK_FALSE(dir.latest<double>(fp, [](const std::string&) {}).has_value());
}

TEST_CASE("stale temp files of interrupted writes are removed, finished files kept", "[forward][train]") {
  const fs::path run = scratch_dir("checkpoints_stale");
  const CheckpointDir dir(run, 2);
  const std::vector<std::uint8_t> bytes{1, 2, 3};
  dir.write_periodic(1, bytes);
  write_file_bytes(run / "model.pgolf", bytes);
  for (const fs::path& p : {run / "checkpoint.bin.tmp", dir.periodic_dir() / "step_00000002.bin.tmp"})
    write_file_bytes(p, bytes);  // as a killed write leaves them
  const auto removed = dir.remove_stale();
  CHECK(removed.size() == 2);
  CHECK_FALSE(fs::exists(run / "checkpoint.bin.tmp"));
  CHECK_FALSE(fs::exists(dir.periodic_dir() / "step_00000002.bin.tmp"));
  CHECK(fs::exists(dir.periodic_path(1)));
  CHECK(fs::exists(run / "model.pgolf"));
  // write_file_bytes leaves no temp file behind after a successful write.
  CHECK(dir.remove_stale().empty());
}

TEST_CASE("end-phase checkpoints sort after their step's own, and are pruned and found in that order",
          "[forward][train]") {
  const fs::path run = scratch_dir("checkpoints_end_phase");
  const CheckpointDir dir(run, 3);
  const std::vector<std::uint8_t> bytes{1, 2, 3};
  CHECK(dir.periodic_path(6, 12).filename() == "step_00000006_end_00000012.bin");
  for (const auto& [step, end] : std::vector<std::pair<long long, long long>>{{5, 0}, {6, 0}, {6, 2}, {6, 10}})
    dir.write_periodic(step, bytes, end);
  // Names that only look like checkpoints are not theirs to list or prune.
  for (const char* other : {"step_00000006_end_00000000.bin", "step_6_end_3.bin", "step_00000006_end_0000001x.bin"})
    write_file_bytes(dir.periodic_dir() / other, bytes);
  const auto all = dir.periodic();
  REQUIRE(all.size() == 3);  // step 5 pruned: (6, 0) < (6, 2) < (6, 10), not by name (end 10 > end 2)
  CHECK((all[0].step == 6 && all[0].end == 0));
  CHECK((all[1].step == 6 && all[1].end == 2));
  CHECK((all[2].step == 6 && all[2].end == 10));
  CHECK(fs::exists(dir.periodic_dir() / "step_6_end_3.bin"));
}

TEST_CASE("latest() picks the checkpoint furthest into the end phase, the final one over all of them",
          "[forward][train][post_train]") {
  RunLog log;
  TrainConfig c = small_config();
  c.iterations = 3;
  c.ema_decay = 0.9;
  c.distill_steps = 3;
  c.checkpoint_every = 1;
  c.keep_checkpoints = 3;
  c.out_dir = scratch_dir("checkpoints_latest_end").string();
  Trainer<Model> tr(c, log);
  tr.run();
  const CheckpointDir dir = tr.checkpoint_dir();
  const auto fp = table_fingerprint(Model::param_table);
  auto quiet = [](const std::string&) {};
  const auto kept = dir.periodic();
  REQUIRE(kept.size() == 3);  // the newest three: step 3's distillation steps 1, 2, 3
  CHECK((kept[0].step == 3 && kept[0].end == 1 && kept[2].end == 3));
  CHECK(dir.latest<float>(fp, quiet)->filename() == "step_00000003_end_00000003.bin");
  dir.write_final(encode_checkpoint(tr.checkpoint()));
  CHECK(dir.latest<float>(fp, quiet)->filename() == "checkpoint.bin");
}
