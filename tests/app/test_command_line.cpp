// The variant command line without a model: for every flag, the flag typed on the command line
// beats its environment variable, which beats the preset, in every subcommand; values that would
// wrap or stall are refused before any work.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "pgolf/app/command_line.hpp"

namespace {

using pgolf::app::Command;
using pgolf::app::Parsed;
using pgolf::app::Variant;

// An existing file for the positional argument of eval/export (the parser checks existence only).
const char* existing_file() { return PGOLF_TEST_SOURCE; }

Parsed parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"pgolf-test"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return pgolf::app::parse_command_line(int(argv.size()), argv.data(), Variant{.name = "pgolf-test"});
}

// What a parse decided, as one comparable string (the run id is pinned: it defaults to the clock).
std::string decided(std::vector<std::string> args) {
  args.insert(args.end(), {"--run-id", "pinned"});
  const Parsed p = parse(args);
  REQUIRE(p.command.has_value());
  return p.command->config.to_json() + " device=" + p.command->device;
}

struct Case {
  std::string env, env_value;           // the environment variable and a value for it
  std::vector<std::string> flag_value;  // the flag as typed, with a different value
};

// Every flag of add_config_flags with its environment variable; a flag missing here fails the
// coverage check below, so a new flag cannot skip this test.
const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> m{
      {"--iterations", {"ITERATIONS", "11", {"--iterations", "12"}}},
      {"--warmdown-iters", {"WARMDOWN_ITERS", "3", {"--warmdown-iters", "4"}}},
      {"--max-wallclock-seconds", {"MAX_WALLCLOCK_SECONDS", "30", {"--max-wallclock-seconds", "40"}}},
      {"--val-loss-every", {"VAL_LOSS_EVERY", "5", {"--val-loss-every", "6"}}},
      {"--train-log-every", {"TRAIN_LOG_EVERY", "7", {"--train-log-every", "8"}}},
      {"--train-batch-tokens", {"TRAIN_BATCH_TOKENS", "1048576", {"--train-batch-tokens", "262144"}}},
      {"--train-seq-len", {"TRAIN_SEQ_LEN", "512", {"--train-seq-len", "2048"}}},
      {"--micro-batch-tokens", {"MICRO_BATCH_TOKENS", "4096", {"--micro-batch-tokens", "16384"}}},
      {"--matrix-lr", {"MATRIX_LR", "0.01", {"--matrix-lr", "0.02"}}},
      {"--scalar-lr", {"SCALAR_LR", "0.01", {"--scalar-lr", "0.02"}}},
      {"--tied-embed-lr", {"TIED_EMBED_LR", "0.01", {"--tied-embed-lr", "0.02"}}},
      {"--embed-lr", {"EMBED_LR", "0.01", {"--embed-lr", "0.02"}}},
      {"--head-lr", {"HEAD_LR", "0.01", {"--head-lr", "0.02"}}},
      {"--muon-momentum", {"MUON_MOMENTUM", "0.9", {"--muon-momentum", "0.8"}}},
      {"--muon-momentum-warmup-start", {"MUON_MOMENTUM_WARMUP_START", "0.7", {"--muon-momentum-warmup-start", "0.6"}}},
      {"--muon-momentum-warmup-steps", {"MUON_MOMENTUM_WARMUP_STEPS", "10", {"--muon-momentum-warmup-steps", "20"}}},
      {"--muon-weight-decay", {"MUON_WEIGHT_DECAY", "0.01", {"--muon-weight-decay", "0.02"}}},
      {"--muon-row-normalize", {"MUON_ROW_NORMALIZE", "1", {"--no-muon-row-normalize"}}},
      {"--muon-shard", {"MUON_SHARD", "0", {"--muon-shard"}}},
      {"--muon-ns-bf16", {"MUON_NS_BF16", "1", {"--no-muon-ns-bf16"}}},
      {"--deterministic", {"DETERMINISTIC", "0", {"--deterministic"}}},
      {"--loop-enable-at", {"LOOP_ENABLE_AT", "0.5", {"--loop-enable-at", "0.6"}}},
      // training recipe (weight averaging, late QAT, Muon/schedule options)
      {"--ema-decay", {"EMA_DECAY", "0.997", {"--ema-decay", "0.9965"}}},
      {"--swa-every", {"SWA_EVERY", "5", {"--swa-every", "10"}}},
      {"--swa-threshold", {"SWA_THRESHOLD", "0.2", {"--swa-threshold", "0.3"}}},
      {"--average", {"AVERAGE", "swa", {"--average", "ema"}}},
      {"--qat-threshold", {"QAT_THRESHOLD", "0.15", {"--qat-threshold", "0.25"}}},
      {"--qat-bits", {"QAT_BITS", "5", {"--qat-bits", "4"}}},
      {"--muon-polar-express", {"MUON_POLAR_EXPRESS", "1", {"--no-muon-polar-express"}}},
      {"--min-lr-scale", {"MIN_LR_SCALE", "0.1", {"--min-lr-scale", "0.2"}}},
      {"--warmdown-fraction", {"WARMDOWN_FRACTION", "0.85", {"--warmdown-fraction", "0.7"}}},
      // late replay and self-distillation
      {"--replay-batches", {"REPLAY_BATCHES", "100", {"--replay-batches", "50"}}},
      {"--replay-epochs", {"REPLAY_EPOCHS", "3", {"--replay-epochs", "4"}}},
      {"--replay-lr-scale", {"REPLAY_LR_SCALE", "0.2", {"--replay-lr-scale", "0.3"}}},
      {"--replay-threshold", {"REPLAY_THRESHOLD", "0.3", {"--replay-threshold", "0.4"}}},
      {"--distill-steps", {"DISTILL_STEPS", "50", {"--distill-steps", "60"}}},
      {"--distill-lr-scale", {"DISTILL_LR_SCALE", "0.06", {"--distill-lr-scale", "0.07"}}},
      {"--distill-temperature", {"DISTILL_TEMPERATURE", "3", {"--distill-temperature", "4"}}},
      {"--distill-alpha", {"DISTILL_ALPHA", "0.5", {"--distill-alpha", "0.6"}}},
      {"--distill-per-sequence", {"DISTILL_PER_SEQUENCE", "1", {"--no-distill-per-sequence"}}},
      {"--post-train-seconds", {"POST_TRAIN_SECONDS", "20", {"--post-train-seconds", "30"}}},
      {"--muon-backend-steps", {"MUON_BACKEND_STEPS", "3", {"--muon-backend-steps", "4"}}},
      {"--beta1", {"BETA1", "0.8", {"--beta1", "0.7"}}},
      {"--beta2", {"BETA2", "0.9", {"--beta2", "0.99"}}},
      {"--adam-eps", {"ADAM_EPS", "1e-06", {"--adam-eps", "1e-07"}}},
      {"--grad-clip-norm", {"GRAD_CLIP_NORM", "1", {"--grad-clip-norm", "2"}}},
      {"--data-path", {"DATA_PATH", "/data/a", {"--data-path", "/data/b"}}},
      {"--tokenizer-path", {"TOKENIZER_PATH", "/a.model", {"--tokenizer-path", "/b.model"}}},
      {"--val-tokens", {"VAL_TOKENS", "5000", {"--val-tokens", "6000"}}},
      {"--eval-stride", {"EVAL_STRIDE", "64", {"--eval-stride", "128"}}},
      {"--eval-seq-len", {"EVAL_SEQ_LEN", "2048", {"--eval-seq-len", "4096"}}},
      {"--seed", {"SEED", "7", {"--seed", "9"}}},
      {"--out-dir", {"OUT_DIR", "/runs/a", {"--out-dir", "/runs/b"}}},
      {"--checkpoint-every", {"CHECKPOINT_EVERY", "10", {"--checkpoint-every", "20"}}},
      {"--keep-checkpoints", {"KEEP_CHECKPOINTS", "3", {"--keep-checkpoints", "4"}}},
      {"--compressor", {"COMPRESSOR", "zstd", {"--compressor", "brotli"}}},
      {"--compress-level", {"COMPRESS_LEVEL", "1", {"--compress-level", "2"}}},
      {"--device", {"PGOLF_DEVICE", "cpu", {"--device", "cuda"}}},
      // export quantisers
      {"--quant", {"QUANT", "rowmax", {"--quant", "gptq-lite"}}},
      {"--quant-bits", {"QUANT_BITS", "5", {"--quant-bits", "7"}}},
      {"--mlp-bits", {"MLP_BITS", "5", {"--mlp-bits", "4"}}},
      {"--embed-quant", {"EMBED_QUANT", "rowmax", {"--embed-quant", "gptq-lite"}}},
      {"--embed-bits", {"EMBED_BITS", "6", {"--embed-bits", "7"}}},
      {"--quant-min-numel", {"QUANT_MIN_NUMEL", "1000", {"--quant-min-numel", "2000"}}},
      {"--gptq-calib-batches", {"GPTQ_CALIB_BATCHES", "4", {"--gptq-calib-batches", "8"}}},
      {"--gptq-sdclip", {"GPTQ_SDCLIP", "0", {"--gptq-sdclip"}}},
      {"--lqer-rank", {"LQER_RANK", "2", {"--lqer-rank", "4"}}},
      {"--lqer-tensors", {"LQER_TENSORS", "2", {"--lqer-tensors", "5"}}},
      {"--target-bytes", {"TARGET_BYTES", "1000", {"--target-bytes", "2000"}}},
  };
  return m;
}

// The run id is pinned by decided(); its own precedence is checked separately.
std::vector<std::string> config_flags() {
  pgolf::TrainConfig c;
  std::string codec, device;
  CLI::App app;
  pgolf::app::detail::add_config_flags(app, c, codec, device);
  std::vector<std::string> names;
  for (const CLI::Option* o : app.get_options())
    if (o->get_name() != "--help") names.push_back(o->get_name());
  return names;
}

struct ScopedEnv {
  std::string name;
  ScopedEnv(std::string n, const std::string& v) : name(std::move(n)) { ::setenv(name.c_str(), v.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

}  // namespace

TEST_CASE("every config flag has a precedence case", "[forward]") {
  for (const std::string& name : config_flags()) {
    INFO(name);
    if (name == "--run-id") continue;
    CHECK(cases().count(name) == 1);
  }
  CHECK(cases().size() + 1 == config_flags().size());  // + --run-id
}

TEST_CASE("a typed flag beats its environment variable, which beats the preset", "[forward]") {
  for (const std::vector<std::string> sub :
       {std::vector<std::string>{"train"}, {"eval", existing_file()}, {"export", existing_file()},
        {"import", existing_file(), "-o", "imported.bin"}}) {
    const std::string preset = decided(sub);
    for (const auto& [name, c] : cases()) {
      INFO(sub[0] << " " << name << ": " << c.env << "=" << c.env_value);
      std::vector<std::string> typed = sub;
      typed.insert(typed.end(), c.flag_value.begin(), c.flag_value.end());
      const std::string flag_only = decided(typed);
      std::string env_only, both;
      {
        ScopedEnv env(c.env, c.env_value);
        env_only = decided(sub);
        both = decided(typed);
      }
      CHECK(env_only != preset);     // the variable is read
      CHECK(flag_only != env_only);  // the two values differ, so the next check can fail
      CHECK(both == flag_only);      // and the typed flag wins
    }
  }
}

TEST_CASE("export --format and import: safetensors in and out", "[forward]") {
  const Parsed e = parse({"export", existing_file()});
  REQUIRE(e.command.has_value());
  CHECK(e.command->kind == Command::exp);
  CHECK(e.command->format == "pgolf");
  const Parsed s = parse({"export", existing_file(), "--format", "safetensors", "-o", "m.safetensors", "--overwrite"});
  REQUIRE(s.command.has_value());
  CHECK(s.command->format == "safetensors");
  CHECK(s.command->output == "m.safetensors");
  CHECK(s.command->overwrite);
  CHECK_FALSE(parse({"export", existing_file(), "--format", "onnx"}).command.has_value());
  const Parsed i = parse({"import", existing_file(), "-o", "ck.bin", "--val-tokens", "4097"});
  REQUIRE(i.command.has_value());
  CHECK(i.command->kind == Command::import_);
  CHECK(i.command->file == existing_file());
  CHECK(i.command->output == "ck.bin");
  CHECK_FALSE(i.command->overwrite);
  CHECK(i.command->config.val_tokens == 4097);
  CHECK_FALSE(parse({"import", existing_file()}).command.has_value());  // -o is required
  CHECK_FALSE(parse({"import", "/nonexistent.safetensors", "-o", "ck.bin"}).command.has_value());
}

TEST_CASE("eval and export --weights: auto by default, raw, ema or swa; not on train", "[forward]") {
  for (const char* sub : {"eval", "export"}) {
    INFO(sub);
    const Parsed d = parse({sub, existing_file()});
    REQUIRE(d.command.has_value());
    CHECK(d.command->weights == "auto");
    for (const char* w : {"auto", "raw", "ema", "swa"}) {
      const Parsed p = parse({sub, existing_file(), "--weights", w});
      REQUIRE(p.command.has_value());
      CHECK(p.command->weights == w);
    }
    CHECK_FALSE(parse({sub, existing_file(), "--weights", "swa_of_ema"}).command.has_value());
  }
  CHECK_FALSE(parse({"train", "--weights", "raw"}).command.has_value());
}

TEST_CASE("a variable read for another subcommand does not leak into the invoked one", "[forward]") {
  ScopedEnv env("SEED", "7");
  const Parsed p = parse({"train", "--seed", "9"});
  REQUIRE(p.command.has_value());
  CHECK(p.command->config.seed == 9);
  const Parsed e = parse({"train"});
  REQUIRE(e.command.has_value());
  CHECK(e.command->config.seed == 7);
}

TEST_CASE("the run id: flag, then RUN_ID, then a dated default; the out dir follows it", "[forward]") {
  {
    ScopedEnv env("RUN_ID", "from-env");
    CHECK(parse({"train"}).command->config.run_id == "from-env");
    CHECK(parse({"train", "--run-id", "typed"}).command->config.run_id == "typed");
    CHECK(parse({"train", "--run-id", "typed"}).command->config.out_dir == "runs/typed");
  }
  CHECK(parse({"train"}).command->config.run_id.rfind("pgolf-test-", 0) == 0);
}

TEST_CASE("seeds are whole numbers: a negative one is refused, not wrapped", "[forward]") {
  CHECK_FALSE(parse({"train", "--seed", "-5"}).command.has_value());
  CHECK_FALSE(parse({"train", "--seed", "18446744073709551616"}).command.has_value());
  CHECK_FALSE(parse({"train", "--seed", "1.5"}).command.has_value());
  CHECK(parse({"train", "--seed", "18446744073709551615"}).command->config.seed == 18446744073709551615ULL);
  ScopedEnv env("SEED", "-5");
  CHECK_FALSE(parse({"train"}).command.has_value());
}

TEST_CASE("counts that overflow are refused by the parser", "[forward]") {
  CHECK_FALSE(parse({"train", "--iterations", "99999999999999999999"}).command.has_value());
  CHECK_FALSE(parse({"train", "--train-seq-len", "4294967296"}).command.has_value());
  CHECK_FALSE(parse({"train", "--iterations", "-1"}).command.has_value());
  CHECK_FALSE(parse({"train", "--max-wallclock-seconds", "nan"}).command.has_value());
}

TEST_CASE("absurd batches are refused at validation, before any work", "[forward]") {
  pgolf::TrainConfig c;
  c.train_seq_len = 1;
  c.train_batch_tokens = 1'000'000'000'000;  // 1.2e8 micro-batches per step
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("micro-batches of at most micro_batch_tokens"));
  c.train_batch_tokens = 1'000'003;  // a prime count of rows: only 1 or all of them divide it
  CHECK(c.accum_steps() == 1'000'003);
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("per optimizer step (at most 65536)"));
  c.train_batch_tokens = 9'000'000'000'000'000'000;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("exceeds the supported"));
  c = pgolf::TrainConfig{};
  c.train_seq_len = 1 << 21;
  c.train_batch_tokens = 1LL << 21;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("train_seq_len 2097152 exceeds"));
  c = pgolf::TrainConfig{};
  c.micro_batch_tokens = 1LL << 40;
  c.train_batch_tokens = 1LL << 40;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("exceeds the supported 2147483648"));
  c = pgolf::TrainConfig{};
  CHECK_NOTHROW(c.validate());
  CHECK(c.grad_accum_steps() == 64);  // the reference's 524,288 tokens in 8,192-token micro-batches
}

TEST_CASE("the accumulation count is the smallest divisor of the rows that fits", "[forward]") {
  pgolf::TrainConfig c;
  c.train_seq_len = 1;
  c.micro_batch_tokens = 4;
  for (long long rows = 1; rows <= 200; ++rows) {
    c.train_batch_tokens = rows;
    long long a = (rows + 3) / 4;
    while (rows % a != 0) ++a;  // the definition, by linear search
    INFO(rows);
    CHECK(c.accum_steps() == a);
  }
}
