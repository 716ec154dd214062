// The variant command line, parsed apart from any model (so it is tested alone): every TrainConfig
// field is a flag of `train`, `eval`, `export` and `import`; where the reference trainer reads an environment
// variable for it (ITERATIONS, TRAIN_BATCH_TOKENS, MATRIX_LR, DATA_PATH, ...) the flag reads the same
// variable. Precedence: a flag typed on the command line, then its environment variable, then the
// variant's preset. Each subcommand binds its own copy of the config, so an environment variable
// read for a subcommand that was not invoked cannot overwrite a flag of the one that was.
#pragma once

#include <algorithm>
#include <array>
#include <ctime>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "pgolf/core/error.hpp"
#include "pgolf/export/compress.hpp"
#include "pgolf/train/config.hpp"

#ifndef PGOLF_CODE_BYTES
#define PGOLF_CODE_BYTES 0
#endif
#ifndef PGOLF_VARIANT_SOURCE  // the variant's source and the include folder (pgolf_add_variant): submit packs them
#define PGOLF_VARIANT_SOURCE ""
#endif
#ifndef PGOLF_INCLUDE_DIR
#define PGOLF_INCLUDE_DIR ""
#endif
#ifndef PGOLF_ABLATION_HEADER
#define PGOLF_ABLATION_HEADER_PATH ""
#else
#define PGOLF_ABLATION_HEADER_PATH PGOLF_ABLATION_HEADER
#endif
#ifndef PGOLF_BUNDLED_DATA_DIR
#define PGOLF_BUNDLED_DATA_DIR ""
#endif

namespace pgolf::app {

struct Variant {
  std::string name;                 // binary name, used in the default run id
  std::string description;
  TrainConfig defaults{};           // the variant's preset; flags and environment override it
  long long code_bytes = PGOLF_CODE_BYTES;  // configure time: source + every header (the fallback count)
  std::string source = PGOLF_VARIANT_SOURCE, include_dir = PGOLF_INCLUDE_DIR, ablation_header = PGOLF_ABLATION_HEADER_PATH;
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

// "must be >= 1, got '0'" rather than CLI11's range message with a 300-digit upper bound. A whole
// number beyond 64 bits is refused here: CLI11 would clamp it to the largest integer silently.
inline CLI::Validator at_least(double lo, std::string name) {
  return CLI::Validator(
      [lo, name](std::string& s) -> std::string {
        try {
          std::size_t used = 0;
          const double v = std::stod(s, &used);
          if (s.find_first_not_of("+-0123456789") == std::string::npos) (void)std::stoll(s);  // throws beyond 64 bits
          if (used == s.size() && v >= lo) return {};
        } catch (const std::exception&) {
        }
        return "must be " + name + ", got '" + s + "'";
      },
      name);
}

// "must be a whole number >= 0, got '-5'": CLI11 would wrap a negative seed into an unsigned one.
inline CLI::Validator unsigned_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const bool digits = !s.empty() && s.size() <= 20 &&
                            std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        if (digits && (s.size() < 20 || s <= "18446744073709551615")) return {};
        return "must be a whole number in [0, 18446744073709551615], got '" + s + "'";
      },
      "UINT");
}

inline void add_config_flags(CLI::App& cmd, TrainConfig& c, std::string& codec, std::string& device) {
  const CLI::Validator nonneg = at_least(0, ">= 0"), positive = at_least(1, ">= 1");
  const CLI::Validator whole_number = unsigned_integer();
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
  cmd.add_flag("--muon-shard,!--no-muon-shard", c.muon_shard,
               "data parallel: each rank orthogonalises its share of Muon's matrices and the updates are "
               "summed (on the CPU the same update bit for bit); off: every rank runs all of them")
      ->envname("MUON_SHARD")->capture_default_str();
  cmd.add_flag("--deterministic,!--no-deterministic", c.deterministic,
               "the CUDA flash attention's backward without atomics, the same bits every run; off: the "
               "atomics backward (faster where measured so; the CPU and the gemm path are deterministic)")
      ->envname("DETERMINISTIC")->capture_default_str();
  cmd.add_option("--loop-enable-at", c.loop_enable_at,
                 "fraction of training at which a variant with a looped schedule switches it on; -1: 0.35")
      ->envname("LOOP_ENABLE_AT")->capture_default_str();
  // Training recipe of the records: weight averaging, late QAT, Muon/schedule options (TrainConfig).
  cmd.add_option("--ema-decay", c.ema_decay, "EMA of the weights, ema <- d*ema + (1-d)*w each step; 0: off")
      ->envname("EMA_DECAY")->check(CLI::Range(0.0, 0.999999999))->capture_default_str();
  cmd.add_option("--swa-every", c.swa_every, "SWA: add the weights to a running mean every N steps; 0: off")
      ->envname("SWA_EVERY")->check(nonneg)->capture_default_str();
  cmd.add_option("--swa-threshold", c.swa_threshold, "SWA collects while the LR multiplier is below this")
      ->envname("SWA_THRESHOLD")->capture_default_str();
  cmd.add_option("--average", c.average, "weights scored and exported: auto, none, ema, swa, swa_of_ema")
      ->envname("AVERAGE")->check(CLI::IsMember({"auto", "none", "ema", "swa", "swa_of_ema"}))->capture_default_str();
  cmd.add_option("--qat-threshold", c.qat_threshold,
                 "late QAT: fake-quantise the Muon matrices once the LR multiplier is at or below this; 0: off")
      ->envname("QAT_THRESHOLD")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd.add_option("--qat-bits", c.qat_bits, "late QAT bits per weight (2..8)")
      ->envname("QAT_BITS")->check(CLI::Range(2, 8))->capture_default_str();
  cmd.add_flag("--muon-polar-express,!--no-muon-polar-express", c.muon_polar_express,
               "Newton-Schulz with the Polar Express per-iteration coefficients")
      ->envname("MUON_POLAR_EXPRESS")->capture_default_str();
  cmd.add_option("--min-lr-scale", c.min_lr_scale, "floor of the warmdown's LR multiplier")
      ->envname("MIN_LR_SCALE")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd.add_option("--warmdown-fraction", c.warmdown_fraction,
                 "warmdown over this fraction of the run (steps, or wall clock when capped); 0: warmdown_iters")
      ->envname("WARMDOWN_FRACTION")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  // Late replay and self-distillation after the main loop (TrainConfig).
  cmd.add_option("--replay-batches", c.replay_batches, "late replay: FIFO of the last N micro-batches; 0: off")
      ->envname("REPLAY_BATCHES")->check(nonneg)->capture_default_str();
  cmd.add_option("--replay-epochs", c.replay_epochs, "late replay: passes over the FIFO")
      ->envname("REPLAY_EPOCHS")->check(positive)->capture_default_str();
  cmd.add_option("--replay-lr-scale", c.replay_lr_scale, "late replay: fraction of every group's base LR")
      ->envname("REPLAY_LR_SCALE")->check(nonneg)->capture_default_str();
  cmd.add_option("--replay-threshold", c.replay_threshold, "late replay collects while the LR multiplier is below this")
      ->envname("REPLAY_THRESHOLD")->check(CLI::Range(0.000001, 1.0))->capture_default_str();
  cmd.add_option("--distill-steps", c.distill_steps, "self-distillation steps from the EMA teacher; 0: off")
      ->envname("DISTILL_STEPS")->check(nonneg)->capture_default_str();
  cmd.add_option("--distill-lr-scale", c.distill_lr_scale, "self-distillation: fraction of every group's base LR")
      ->envname("DISTILL_LR_SCALE")->check(nonneg)->capture_default_str();
  cmd.add_option("--distill-temperature", c.distill_temperature, "self-distillation temperature tau")
      ->envname("DISTILL_TEMPERATURE")->check(at_least(1e-6, "> 0"))->capture_default_str();
  cmd.add_option("--distill-alpha", c.distill_alpha, "self-distillation: weight of the KL term")
      ->envname("DISTILL_ALPHA")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd.add_flag("--distill-per-sequence,!--no-distill-per-sequence", c.distill_per_sequence,
               "self-distillation: the seed's KL normalisation (a sum per sequence) instead of per token")
      ->envname("DISTILL_PER_SEQUENCE")->capture_default_str();
  cmd.add_option("--post-train-seconds", c.post_train_seconds,
                 "replay and distillation inside the wall-clock cap: the main loop stops this much earlier; "
                 "0: they run outside it")
      ->envname("POST_TRAIN_SECONDS")->check(nonneg)->capture_default_str();
  cmd.add_option("--muon-backend-steps", c.muon_backend_steps, "Newton-Schulz iterations")
      ->envname("MUON_BACKEND_STEPS")->check(positive)->capture_default_str();
  cmd.add_flag("--muon-ns-bf16,!--no-muon-ns-bf16", c.muon_ns_bf16,
               "Newton-Schulz in bf16 on the CPU too, as the reference (and the CUDA backend) run it")
      ->envname("MUON_NS_BF16")->capture_default_str();
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
  // sliding-window evaluation
  cmd.add_option("--eval-stride", c.eval_stride,
                 "sliding-window evaluation of the final scores (and of `eval`) with this stride, window "
                 "--eval-seq-len; 0: standard non-overlapping evaluation")
      ->envname("EVAL_STRIDE")->check(nonneg)->capture_default_str();
  cmd.add_option("--eval-seq-len", c.eval_seq_len,
                 "the sliding window's length (a longer context than training; the spec's RoPE scaling "
                 "applies); 0: train_seq_len")
      ->envname("EVAL_SEQ_LEN")->check(nonneg)->capture_default_str();
  cmd.add_option("--seed", c.seed, "initialisation seed, a whole number >= 0")
      ->envname("SEED")->check(whole_number)->capture_default_str();
  cmd.add_option("--run-id", c.run_id, "run name")->envname("RUN_ID");
  cmd.add_option("--out-dir", c.out_dir, "directory for train.log, metrics.jsonl, checkpoint.bin, checkpoints/, "
                                          "model.pgolf (default runs/<run-id>)")->envname("OUT_DIR");
  cmd.add_option("--checkpoint-every", c.checkpoint_every,
                 "write a checkpoint to <out-dir>/checkpoints/ every N steps; 0: only at the end")
      ->envname("CHECKPOINT_EVERY")->check(nonneg)->capture_default_str();
  cmd.add_option("--keep-checkpoints", c.keep_checkpoints, "how many of the periodic checkpoints to keep (the newest)")
      ->envname("KEEP_CHECKPOINTS")->check(positive)->capture_default_str();
  cmd.add_option("--compressor", codec, "artifact compressor")
      ->envname("COMPRESSOR")->check(CLI::IsMember({"none", "zlib", "zstd", "brotli", "brotli-shuffle", "lzma"}))->capture_default_str();
  cmd.add_option("--compress-level", c.codec_level, "compressor level; -1: the codec's default (zlib 9, zstd 22, brotli 11, lzma 9)")
      ->envname("COMPRESS_LEVEL")->capture_default_str();
  // export quantisers (quant helper): TrainConfig::export_options(), export/options.hpp
  const auto quantisers = CLI::IsMember({"int8", "rowmax", "int6", "gptq-lite", "gptq"});
  cmd.add_option("--quant", c.quant, "quantiser of the attention, MLP and other matrices: int8 (the reference's), "
                                     "rowmax / int6 (row-max scales), gptq-lite (clip-percentile search), gptq "
                                     "(full-Hessian, calibrated on training batches on either backend)")
      ->envname("QUANT")->check(quantisers)->capture_default_str();
  cmd.add_option("--quant-bits", c.quant_bits, "bits of --quant (2..8); 0: 8 for int8, else 6")
      ->envname("QUANT_BITS")->check(CLI::Range(0, 8))->capture_default_str();
  cmd.add_option("--mlp-bits", c.mlp_bits, "bits of the MLP matrices (5: the records' int5 MLP); 0: --quant-bits")
      ->envname("MLP_BITS")->check(CLI::Range(0, 8))->capture_default_str();
  cmd.add_option("--embed-quant", c.embed_quant, "quantiser of the token embedding (same names as --quant)")
      ->envname("EMBED_QUANT")->check(quantisers)->capture_default_str();
  cmd.add_option("--embed-bits", c.embed_bits, "bits of --embed-quant (2..8); 0: 8 for int8, else 6")
      ->envname("EMBED_BITS")->check(CLI::Range(0, 8))->capture_default_str();
  cmd.add_option("--quant-min-numel", c.quant_min_numel,
                 "matrices with more elements are quantised (the reference: 65536; smaller ones stay fp16)")
      ->envname("QUANT_MIN_NUMEL")->check(nonneg)->capture_default_str();
  cmd.add_option("--gptq-calib-batches", c.gptq_calib_batches, "training micro-batches that calibrate GPTQ's Hessians")
      ->envname("GPTQ_CALIB_BATCHES")->check(positive)->capture_default_str();
  cmd.add_flag("--gptq-sdclip,!--no-gptq-sdclip", c.gptq_sdclip,
               "GPTQ row scales k * std(row) / Qmax (SDClip); off: the clip-percentile sweep")
      ->envname("GPTQ_SDCLIP")->capture_default_str();
  cmd.add_option("--lqer-rank", c.lqer_rank, "LQER: rank of a low-rank correction (A INT2, B INT4 per 32) of the "
                                             "worst-quantised matrices; 0: off")
      ->envname("LQER_RANK")->check(CLI::Range(0, 16))->capture_default_str();
  cmd.add_option("--lqer-tensors", c.lqer_tensors, "LQER: how many matrices (largest quantisation error first)")
      ->envname("LQER_TENSORS")->check(positive)->capture_default_str();
  cmd.add_option("--target-bytes", c.target_bytes, "zero the cheapest +-1 codes until the artifact fits this many "
                                                   "bytes; 0: off")
      ->envname("TARGET_BYTES")->check(nonneg)->capture_default_str();
  cmd.add_option("--device", device, "backend: auto (cuda when a GPU is present), cpu or cuda")
      ->envname("PGOLF_DEVICE")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
}

}  // namespace detail

// What the command line asked for. `config` is the invoked subcommand's, with the run id and the
// out dir defaulted; `micro_batch_given` says whether a flag or MICRO_BATCH_TOKENS set it.
struct Command {
  enum Kind { train, eval, exp, info, import_, submit, verify } kind = train;
  TrainConfig config;
  std::string device = "auto", resume, file, output;
  std::string format = "pgolf";  // export: pgolf (the compressed artifact) or safetensors
  std::string weights = "auto";  // eval / export of a checkpoint: auto (the run's average), raw, ema, swa
  bool no_progress = false, overwrite = false, micro_batch_given = false;
  // submit / verify (app/submit.hpp)
  std::string name, author, github_id, hardware;
  std::optional<double> tolerance;  // verify: unset, by the device that scored the run
  bool keep_build = false;
  std::string build_dir;
};

// The parsed command, or (help, --version, a parse error) the exit code CLI11 chose after printing.
struct Parsed {
  std::optional<Command> command;
  int exit_code = 0;
};

inline Parsed parse_command_line(int argc, const char* const* argv, const Variant& variant) {
  struct Bound {
    TrainConfig cfg;
    std::string codec, device = "auto";
  };
  const TrainConfig preset = with_bundled_data(variant.defaults);
  std::array<Bound, 4> bound;
  for (auto& b : bound) b.cfg = preset, b.codec = std::string(to_string(preset.codec));
  Command cmd;

  CLI::App app(variant.description.empty() ? variant.name : variant.description, variant.name);
  app.require_subcommand(1);
  CLI::App* train = app.add_subcommand("train", "train, validate, save checkpoints, export the artifact, score its round trip");
  CLI::App* eval = app.add_subcommand("eval", "val_loss and val_bpb of a checkpoint or an artifact");
  CLI::App* exp = app.add_subcommand("export", "compress a checkpoint into an artifact and score its round trip");
  CLI::App* info = app.add_subcommand("info", "print the parameter table (optimizer groups, export policies)");
  CLI::App* imp = app.add_subcommand("import", "turn a safetensors state dict (the PyTorch reference's names) into a "
                                               "checkpoint, and score it");
  CLI::App* submit = app.add_subcommand("submit", "write a records-style submission folder from a finished run (README.md, "
                                        "submission.json, train.log, model.pgolf, packed code, build.sh)");
  CLI::App* verify = app.add_subcommand("verify", "check a submission folder: files, bytes, and the score of its artifact by "
                                        "the binary its packed code builds");
  const std::array<CLI::App*, 4> subs{train, eval, exp, imp};
  for (std::size_t k = 0; k < subs.size(); ++k)
    detail::add_config_flags(*subs[k], bound[k].cfg, bound[k].codec, bound[k].device);
  train->add_option("--resume", cmd.resume, "continue from a checkpoint's full state: a file, or `latest` (the newest "
                                            "checkpoint in --out-dir)")
      ->check(CLI::ExistingFile | CLI::IsMember({"latest"}));
  train->add_flag("--overwrite", cmd.overwrite, "train into a non-empty --out-dir, replacing the run files found there");
  train->add_flag("--no-progress", cmd.no_progress, "no progress bar");
  eval->add_option("file", cmd.file, "checkpoint (.bin), artifact (.pgolf) or safetensors state dict (.safetensors)")
      ->required()->check(CLI::ExistingFile);
  exp->add_option("checkpoint", cmd.file, "checkpoint to export")->required()->check(CLI::ExistingFile);
  exp->add_option("-o,--output", cmd.output, "output path (default <out-dir>/model.pgolf or <out-dir>/model.safetensors)");
  exp->add_option("--format", cmd.format, "pgolf: the compressed artifact, scored after its round trip; safetensors: "
                                          "every weight at full precision under the reference's state-dict names")
      ->check(CLI::IsMember({"pgolf", "safetensors"}))->capture_default_str();
  exp->add_flag("--overwrite", cmd.overwrite, "replace an existing output file");
  // Which weights of a checkpoint eval and export read (Trainer::load_weights).
  for (CLI::App* sub : {eval, exp})
    sub->add_option("--weights", cmd.weights, "a checkpoint's weights: auto (the average its run exported: EMA, SWA "
                                              "or raw), raw (the trained weights), ema, swa (sum / count)")
        ->check(CLI::IsMember({"auto", "raw", "ema", "swa"}))->capture_default_str();
  imp->add_option("file", cmd.file, "safetensors state dict to import")->required()->check(CLI::ExistingFile);
  imp->add_option("-o,--output", cmd.output, "checkpoint to write")->required();
  imp->add_flag("--overwrite", cmd.overwrite, "replace an existing checkpoint file");
  submit->add_option("run_dir", cmd.file, "the run folder (train.log, metrics.jsonl, model.pgolf)")->required();
  submit->add_option("-o,--output", cmd.output, "the submission folder (default RUN_DIR/submission)");
  submit->add_flag("--overwrite", cmd.overwrite, "write into a non-empty submission folder");
  submit->add_option("--name", cmd.name, "submission.json's name (default: variant and run id)");
  submit->add_option("--author", cmd.author, "submission.json's author");
  submit->add_option("--github-id", cmd.github_id, "submission.json's github_id");
  submit->add_option("--hardware", cmd.hardware, "submission.json's hardware (default: the run's device and world size)");
  verify->add_option("dir", cmd.file, "the submission folder")->required();
  verify->add_option("--data-path", cmd.config.data_path, "data the built binary scores on (default: this binary's)")
      ->envname("DATA_PATH");
  verify->add_option("--tokenizer-path", cmd.config.tokenizer_path, "tokenizer the built binary scores with")
      ->envname("TOKENIZER_PATH");
  verify->add_option("--tolerance", cmd.tolerance, "largest |difference| of val_bpb and val_loss from submission.json "
                                                   "(default 1e-8, or 2e-3 for a run scored on a GPU: the built binary "
                                                   "scores on the CPU)")
      ->check(CLI::NonNegativeNumber);
  verify->add_flag("--keep-build", cmd.keep_build, "keep the scratch folder the code was built in");
  verify->add_option("--build-dir", cmd.build_dir, "build in this folder and keep it; a build there of byte-identical "
                                                   "packed code and build.sh is reused (one verify at a time per folder)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e)};
  }

  if (info->parsed() || submit->parsed()) {
    cmd.kind = info->parsed() ? Command::info : Command::submit;
    cmd.config = preset;
    return {cmd, 0};
  }
  if (verify->parsed()) {
    cmd.kind = Command::verify;
    if (cmd.config.data_path.empty()) cmd.config.data_path = preset.data_path;
    if (cmd.config.tokenizer_path.empty()) cmd.config.tokenizer_path = preset.tokenizer_path;
    return {cmd, 0};
  }
  const std::size_t k = train->parsed() ? 0 : eval->parsed() ? 1 : exp->parsed() ? 2 : 3;
  constexpr Command::Kind kinds[] = {Command::train, Command::eval, Command::exp, Command::import_};
  cmd.kind = kinds[k];
  Bound& b = bound[k];
  cmd.config = b.cfg;
  cmd.device = b.device;
  cmd.micro_batch_given = subs[k]->get_option("--micro-batch-tokens")->count() > 0;
  TrainConfig& c = cmd.config;
  c.codec = parse_codec(b.codec);
  if (c.run_id.empty()) c.run_id = detail::default_run_id(variant.name);
  if (c.out_dir.empty()) c.out_dir = (std::filesystem::path("runs") / c.run_id).string();
  return {cmd, 0};
}

}  // namespace pgolf::app
