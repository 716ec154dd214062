// app::main<Model, GpuModel>: the command line every variant binary shares.
//
//   <binary> train  [flags]              train, validate, save a checkpoint, export, score the round trip
//   <binary> eval   FILE [flags]         val_loss / val_bpb of a checkpoint or an artifact
//   <binary> export CHECKPOINT [flags]   write the compressed artifact and score its round trip
//   <binary> info                        the parameter table: names, shapes, optimizer groups, export policies
//
// A binary built as a point of an ablation grid (pgolf_add_ablation) prints its overrides in
// `info` and the training log ("ablation: mlp.mult=2"); metrics.jsonl's "variant" record carries
// them with the parameter count.
//
// Every TrainConfig field is a flag; where the reference trainer reads an environment variable
// for it (ITERATIONS, TRAIN_BATCH_TOKENS, MATRIX_LR, DATA_PATH, ...) the flag reads the same
// variable, and an explicit flag wins. Values are checked before any work starts.
//
// --device auto|cpu|cuda picks the backend at run time between the two specialisations a variant
// binary carries: Model (CPU) and, when built with CUDA (pgolf_add_variant(... CUDA)), GpuModel.
// auto means cuda when a device is present. On cuda the micro-batch defaults to 65,536 tokens
// unless --micro-batch-tokens / MICRO_BATCH_TOKENS says otherwise. Checkpoints and artifacts are
// the same files on both backends.
//
// Sizes: "model bytes" is the artifact file (header + compressed payload). "code bytes" is what a
// submission would ship besides it: the variant's source file plus every header under
// include/pgolf/, counted by pgolf_add_variant() at configure time (PGOLF_CODE_BYTES); 0 when
// the binary was built without it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>

#include "pgolf/app/ablation.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/export/artifact.hpp"
#include "pgolf/train/checkpoint.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/run_log.hpp"
#include "pgolf/train/trainer.hpp"

#ifndef PGOLF_CODE_BYTES
#define PGOLF_CODE_BYTES 0
#endif
#ifndef PGOLF_BUNDLED_DATA_DIR
#define PGOLF_BUNDLED_DATA_DIR ""
#endif

namespace pgolf::app {

struct Variant {
  std::string name;                 // binary name, used in the default run id
  std::string description;
  TrainConfig defaults{};           // the variant's preset; flags and environment override it
  long long code_bytes = PGOLF_CODE_BYTES;
};

// The bundled data (data/ of the source tree or the installed share/pgolf/data), if known.
inline TrainConfig with_bundled_data(TrainConfig c) {
  const std::filesystem::path root = PGOLF_BUNDLED_DATA_DIR;
  if (!root.empty()) {
    if (c.data_path.empty()) c.data_path = (root / "fineweb_sp1024_mini").string();
    if (c.tokenizer_path.empty()) c.tokenizer_path = (root / "tokenizers" / "fineweb_1024_bpe.model").string();
  }
  return c;
}

namespace detail {

inline std::string default_run_id(const std::string& name) {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&now));
  return name + "-" + buf;
}

// "must be >= 1, got '0'" rather than CLI11's range message with a 300-digit upper bound.
inline CLI::Validator at_least(double lo, std::string name) {
  return CLI::Validator(
      [lo, name](std::string& s) -> std::string {
        try {
          std::size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && v >= lo) return {};
        } catch (const std::exception&) {
        }
        return "must be " + name + ", got '" + s + "'";
      },
      name);
}

inline void add_config_flags(CLI::App& cmd, TrainConfig& c, std::string& codec, std::string& device) {
  const CLI::Validator nonneg = at_least(0, ">= 0"), positive = at_least(1, ">= 1");
  cmd.add_option("--iterations", c.iterations, "optimizer steps")->envname("ITERATIONS")->check(nonneg)->capture_default_str();
  cmd.add_option("--warmdown-iters", c.warmdown_iters, "steps of linear LR decay at the end")
      ->envname("WARMDOWN_ITERS")->check(nonneg)->capture_default_str();
  cmd.add_option("--max-wallclock-seconds", c.max_wallclock_seconds, "training time cap; 0: none (warmdown by steps)")
      ->envname("MAX_WALLCLOCK_SECONDS")->check(nonneg)->capture_default_str();
  cmd.add_option("--val-loss-every", c.val_loss_every, "validate every N steps; 0: at the end only")
      ->envname("VAL_LOSS_EVERY")->check(nonneg)->capture_default_str();
  cmd.add_option("--train-log-every", c.train_log_every, "log train loss every N steps")
      ->envname("TRAIN_LOG_EVERY")->check(nonneg)->capture_default_str();
  cmd.add_option("--train-batch-tokens", c.train_batch_tokens, "tokens per optimizer step")
      ->envname("TRAIN_BATCH_TOKENS")->check(positive)->capture_default_str();
  cmd.add_option("--train-seq-len", c.train_seq_len, "sequence length")
      ->envname("TRAIN_SEQ_LEN")->check(positive)->capture_default_str();
  cmd.add_option("--micro-batch-tokens", c.micro_batch_tokens, "most tokens per forward/backward (gradient accumulation)")
      ->envname("MICRO_BATCH_TOKENS")->check(positive)->capture_default_str();
  cmd.add_option("--matrix-lr", c.matrix_lr, "Muon learning rate")->envname("MATRIX_LR")->check(nonneg)->capture_default_str();
  cmd.add_option("--scalar-lr", c.scalar_lr, "Adam LR of vectors and control tensors")
      ->envname("SCALAR_LR")->check(nonneg)->capture_default_str();
  cmd.add_option("--tied-embed-lr", c.tied_embed_lr, "Adam LR of the tied embedding")
      ->envname("TIED_EMBED_LR")->check(nonneg)->capture_default_str();
  cmd.add_option("--embed-lr", c.embed_lr, "Adam LR of an untied embedding")->envname("EMBED_LR")->check(nonneg)->capture_default_str();
  cmd.add_option("--head-lr", c.head_lr, "Adam LR of an untied head")->envname("HEAD_LR")->check(nonneg)->capture_default_str();
  cmd.add_option("--muon-momentum", c.muon_momentum, "Muon momentum after warm-up")
      ->envname("MUON_MOMENTUM")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd.add_option("--muon-momentum-warmup-start", c.muon_momentum_warmup_start, "Muon momentum at step 0")
      ->envname("MUON_MOMENTUM_WARMUP_START")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd.add_option("--muon-momentum-warmup-steps", c.muon_momentum_warmup_steps, "steps of momentum warm-up")
      ->envname("MUON_MOMENTUM_WARMUP_STEPS")->check(nonneg)->capture_default_str();
  cmd.add_option("--muon-weight-decay", c.muon_weight_decay, "Muon's decoupled weight decay (W *= 1 - lr * wd)")
      ->envname("MUON_WEIGHT_DECAY")->check(nonneg)->capture_default_str();
  cmd.add_flag("--muon-row-normalize,!--no-muon-row-normalize", c.muon_row_normalize,
               "MuonEq-R: normalise each row of Muon's update before Newton-Schulz")
      ->envname("MUON_ROW_NORMALIZE")->capture_default_str();
  cmd.add_option("--loop-enable-at", c.loop_enable_at,
                 "fraction of training at which a variant with a looped schedule switches it on; -1: 0.35")
      ->envname("LOOP_ENABLE_AT")->capture_default_str();
  cmd.add_option("--muon-backend-steps", c.muon_backend_steps, "Newton-Schulz iterations")
      ->envname("MUON_BACKEND_STEPS")->check(positive)->capture_default_str();
  cmd.add_flag("--muon-ns-bf16", c.muon_ns_bf16,
               "Newton-Schulz in bf16 on the CPU too, as the reference (and the CUDA backend) run it");
  cmd.add_option("--beta1", c.beta1, "Adam beta1")->envname("BETA1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd.add_option("--beta2", c.beta2, "Adam beta2")->envname("BETA2")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd.add_option("--adam-eps", c.adam_eps, "Adam epsilon")->envname("ADAM_EPS")->check(nonneg)->capture_default_str();
  cmd.add_option("--grad-clip-norm", c.grad_clip_norm, "global gradient-norm clip; 0: off")
      ->envname("GRAD_CLIP_NORM")->check(nonneg)->capture_default_str();
  cmd.add_option("--data-path", c.data_path, "directory of *_train_*.bin / *_val_*.bin shards")
      ->envname("DATA_PATH")->capture_default_str();
  cmd.add_option("--tokenizer-path", c.tokenizer_path, "SentencePiece .model file")
      ->envname("TOKENIZER_PATH")->capture_default_str();
  cmd.add_option("--val-tokens", c.val_tokens, "score only the first N validation tokens; 0: all")
      ->envname("VAL_TOKENS")->check(nonneg)->capture_default_str();
  cmd.add_option("--seed", c.seed, "initialisation seed")->envname("SEED")->capture_default_str();
  cmd.add_option("--run-id", c.run_id, "run name")->envname("RUN_ID");
  cmd.add_option("--out-dir", c.out_dir, "directory for train.log, metrics.jsonl, checkpoint.bin, model.pgolf "
                                          "(default runs/<run-id>)");
  cmd.add_option("--compressor", codec, "artifact compressor")
      ->envname("COMPRESSOR")->check(CLI::IsMember({"none", "zlib", "zstd", "brotli"}))->capture_default_str();
  cmd.add_option("--compress-level", c.codec_level, "compressor level; -1: the codec's default (zlib 9, zstd 22, brotli 11)")
      ->envname("COMPRESS_LEVEL")->capture_default_str();
  cmd.add_option("--device", device, "backend: auto (cuda when a GPU is present), cpu or cuda")
      ->envname("PGOLF_DEVICE")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
}

// Writes the artifact, reads it back from disk, scores it, and reports sizes in the reference's lines.
template <class Model>
int export_and_score(Trainer<Model>& tr, RunLog& log, const std::filesystem::path& artifact_path, long long code_bytes) {
  using T = typename Model::Scalar;
  const TrainConfig& c = tr.config();
  const std::string codec = std::string(to_string(c.codec));
  const std::size_t raw_fp32 = Model::num_params * sizeof(float);
  log.print(format("Serialized model: %zu bytes", raw_fp32));
  log.print(format("Code size: %lld bytes", code_bytes));
  using Policy = typename Trainer<Model>::Policy;
  const std::vector<T> trained = Policy::params_to_host(tr.model());
  const auto bytes = encode_artifact(Model::param_table, std::span<const T>(trained), c.codec, c.codec_level);
  write_file_bytes(artifact_path, bytes);

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<T> loaded(Model::num_params);
  const ArtifactInfo info = decode_artifact(std::span<const std::uint8_t>(read_file_bytes(artifact_path)),
                                            Model::param_table, std::span<T>(loaded), artifact_path.string());
  Policy::params_from_host(tr.model(), std::span<const T>(loaded));
  const BpbMeter m = tr.validate();
  const double eval_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log.print(format("Serialized model int8+%s: %zu bytes (payload:%zu raw_fp32:%zu payload_ratio:%.2fx)", codec.c_str(),
                info.file_bytes, info.raw_bytes, raw_fp32, double(raw_fp32) / double(info.raw_bytes)));
  log.print(format("Total submission size int8+%s: %lld bytes", codec.c_str(), (long long)info.file_bytes + code_bytes));
  log.print(format("artifact: %s", artifact_path.string().c_str()));
  log.print(format("final_int8_%s_roundtrip val_loss:%.4f val_bpb:%.4f eval_time:%.0fms", codec.c_str(), m.val_loss(),
                m.val_bpb(), eval_ms));
  log.print(format("final_int8_%s_roundtrip_exact val_loss:%.8f val_bpb:%.8f", codec.c_str(), m.val_loss(), m.val_bpb()));
  log.metric(JsonLine()
                 .add("event", "export")
                 .add("artifact", artifact_path.string())
                 .add("codec", codec)
                 .add("model_bytes", info.file_bytes)
                 .add("payload_bytes", info.raw_bytes)
                 .add("code_bytes", code_bytes)
                 .add("total_bytes", (long long)info.file_bytes + code_bytes)
                 .add("roundtrip_val_loss", m.val_loss())
                 .add("roundtrip_val_bpb", m.val_bpb())
                 .str());
  Policy::params_from_host(tr.model(), std::span<const T>(trained));
  return 0;
}

struct Command {
  enum Kind { train, eval, exp } kind = train;
  std::string device, resume, file, output;
  bool no_progress = false;
};

template <class Model>
int run(const Variant& variant, TrainConfig cfg, const Command& cmd) {
  const std::filesystem::path out = cfg.out_dir;
  if (cmd.kind == Command::train) {
    RunLog log({.out_dir = out, .console = true, .progress = !cmd.no_progress});
    log.metric(cfg.to_json());
    Trainer<Model> tr(cfg, log);
    log.print(format("variant:%s device:%s run_id:%s", variant.name.c_str(), cmd.device.c_str(), cfg.run_id.c_str()));
    log.print(format("model_params:%zu", Model::num_params));
    if (*ablation::point()) log.print(format("ablation:%s", ablation::point()));
    log.metric(JsonLine()
                   .add("event", "variant")
                   .add("variant", variant.name)
                   .add("model_params", Model::num_params)
                   .add("code_bytes", variant.code_bytes)
                   .add("ablation", ablation::point())
                   .str());
    log.print(format("train_batch_tokens:%lld train_seq_len:%d grad_accum_steps:%d micro_batch_seqs:%d "
                     "iterations:%lld max_wallclock_seconds:%.3f",
                     cfg.train_batch_tokens, cfg.train_seq_len, cfg.grad_accum_steps(), cfg.micro_batch_rows(),
                     cfg.iterations, cfg.max_wallclock_seconds));
    log.print(format("val_loader:path=%s tokens:%zu", cfg.data_path.c_str(), tr.data().val_tokens().size() - 1));
    log.print(format("seed:%llu", (unsigned long long)cfg.seed));
    if (!cmd.resume.empty()) {
      tr.load_checkpoint(cmd.resume);
      log.print(format("resumed:%s step:%lld train_time:%.0fms", cmd.resume.c_str(), tr.step(), tr.train_ms()));
    }
    tr.run();
    tr.save_checkpoint(out / "checkpoint.bin");
    log.print(format("checkpoint: %s", (out / "checkpoint.bin").string().c_str()));
    return export_and_score(tr, log, out / "model.pgolf", variant.code_bytes);
  }

  using T = typename Model::Scalar;
  RunLog log({.out_dir = {}, .console = true, .progress = false});
  Trainer<Model> tr(cfg, log);
  if (cmd.kind == Command::eval) {
    const auto bytes = read_file_bytes(cmd.file);
    if (is_checkpoint(bytes)) {
      tr.load_checkpoint(cmd.file, /*params_only=*/true);
    } else {
      std::vector<T> loaded(Model::num_params);
      const ArtifactInfo info =
          decode_artifact(std::span<const std::uint8_t>(bytes), Model::param_table, std::span<T>(loaded), cmd.file);
      Trainer<Model>::Policy::params_from_host(tr.model(), std::span<const T>(loaded));
      tr.use_final_phase();
      log.print(format("artifact:%s codec:%s bytes:%zu payload:%zu", cmd.file.c_str(),
                       std::string(to_string(info.codec)).c_str(), info.file_bytes, info.raw_bytes));
    }
    const BpbMeter m = tr.validate();
    log.print(format("val_loss:%.8f val_bpb:%.8f tokens:%lld bytes:%lld", m.val_loss(), m.val_bpb(),
                     (long long)m.tokens, (long long)m.bytes));
    return 0;
  }
  tr.load_checkpoint(cmd.file, /*params_only=*/true);
  const BpbMeter before = tr.validate();
  log.print(format("checkpoint val_loss:%.4f val_bpb:%.4f", before.val_loss(), before.val_bpb()));
  return export_and_score(tr, log, cmd.output.empty() ? out / "model.pgolf" : std::filesystem::path(cmd.output),
                          variant.code_bytes);
}

}  // namespace detail

// Model: the CPU specialisation. GpuModel: the CUDA one (void when the binary has no CUDA backend);
// it provides static bool device_available().
template <class Model, class GpuModel = void>
int main(int argc, char** argv, const Variant& variant) {
  TrainConfig cfg = with_bundled_data(variant.defaults);
  std::string codec = std::string(to_string(cfg.codec)), device = "auto", resume, file, output;
  bool no_progress = false;

  CLI::App app(variant.description.empty() ? variant.name : variant.description, variant.name);
  app.require_subcommand(1);
  auto* train = app.add_subcommand("train", "train, validate, save a checkpoint, export the artifact, score its round trip");
  auto* eval = app.add_subcommand("eval", "val_loss and val_bpb of a checkpoint or an artifact");
  auto* exp = app.add_subcommand("export", "compress a checkpoint into an artifact and score its round trip");
  auto* info = app.add_subcommand("info", "print the parameter table (optimizer groups, export policies)");
  for (auto* cmd : {train, eval, exp}) detail::add_config_flags(*cmd, cfg, codec, device);
  train->add_option("--resume", resume, "continue from a checkpoint's full state")->check(CLI::ExistingFile);
  train->add_flag("--no-progress", no_progress, "no progress bar");
  eval->add_option("file", file, "checkpoint (.bin) or artifact (.pgolf)")->required()->check(CLI::ExistingFile);
  exp->add_option("checkpoint", file, "checkpoint to export")->required()->check(CLI::ExistingFile);
  exp->add_option("-o,--output", output, "artifact path (default <out-dir>/model.pgolf)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (info->parsed()) {
    std::printf("%-28s %-12s %-12s %-16s %-7s %s\n", "parameter", "shape", "group", "export", "scope", "elements");
    for (const auto& p : Model::param_table) {
      const std::string shape =
          p.rank == 1 ? std::to_string(p.rows) : std::to_string(p.rows) + "x" + std::to_string(p.cols);
      std::printf("%-28s %-12s %-12s %-16s %-7s %zu\n", p.name.c_str(), shape.c_str(), std::string(to_string(p.group)).c_str(),
                  std::string(to_string(p.export_policy)).c_str(), std::string(to_string(p.scope)).c_str(), p.numel());
    }
    std::printf("total parameters: %zu\ncode bytes: %lld\n", Model::num_params, variant.code_bytes);
    if (*ablation::point()) std::printf("ablation: %s\n", ablation::point());
    return 0;
  }

  try {
    cfg.codec = parse_codec(codec);
    if (cfg.run_id.empty()) cfg.run_id = detail::default_run_id(variant.name);
    if (cfg.out_dir.empty()) cfg.out_dir = (std::filesystem::path("runs") / cfg.run_id).string();
    detail::Command cmd;
    cmd.kind = train->parsed() ? detail::Command::train : eval->parsed() ? detail::Command::eval : detail::Command::exp;
    cmd.resume = resume, cmd.file = file, cmd.output = output, cmd.no_progress = no_progress;
    if constexpr (std::is_void_v<GpuModel>) {
      PGOLF_CHECK(device != "cuda", variant.name, " was built without the CUDA backend (--device cuda); build it with "
                  "pgolf_add_variant(... CUDA) where nvcc is present");
      cmd.device = "cpu";
    } else {
      const bool have_gpu = GpuModel::device_available();
      PGOLF_CHECK(device != "cuda" || have_gpu, "--device cuda: no CUDA device found");
      cmd.device = device == "auto" ? (have_gpu ? "cuda" : "cpu") : device;
    }
    if (cmd.device == "cuda") {
      const CLI::App* sub = train->parsed() ? train : eval->parsed() ? eval : exp;
      if (sub->get_option("--micro-batch-tokens")->count() == 0)
        cfg.micro_batch_tokens = std::max<long long>(cfg.micro_batch_tokens, 65536);
    }
    cfg.validate();
    if constexpr (!std::is_void_v<GpuModel>)
      if (cmd.device == "cuda") return detail::run<GpuModel>(variant, cfg, cmd);
    return detail::run<Model>(variant, cfg, cmd);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace pgolf::app
