// TrainConfig: every run-time knob of a training run (the architecture is the compile-time spec).
// Defaults are the reference trainer's; the command line sets each field by flag or by the
// reference's environment variable of the same meaning. validate() rejects impossible values
// before any work starts, with a message naming the field.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <algorithm>

#include "pgolf/core/error.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/export/compress.hpp"
#include "pgolf/export/options.hpp"

namespace pgolf {

enum class OptimizerKind { muon_adam, adamw };
enum class LrSchedule { warmdown, warmup_cosine };

inline std::string_view to_string(OptimizerKind k) { return k == OptimizerKind::adamw ? "adamw" : "muon_adam"; }
inline std::string_view to_string(LrSchedule s) { return s == LrSchedule::warmup_cosine ? "warmup_cosine" : "warmdown"; }

struct TrainConfig {
  // schedule
  long long iterations = 20000;            // ITERATIONS
  long long warmdown_iters = 1200;         // WARMDOWN_ITERS
  double max_wallclock_seconds = 600.0;    // MAX_WALLCLOCK_SECONDS; 0: no cap, warmdown by iterations
  long long val_loss_every = 1000;         // VAL_LOSS_EVERY; 0: only at the end
  long long train_log_every = 200;         // TRAIN_LOG_EVERY
  // batch
  long long train_batch_tokens = 524288;   // TRAIN_BATCH_TOKENS: tokens per optimizer step
  int train_seq_len = 1024;                // TRAIN_SEQ_LEN
  long long micro_batch_tokens = 8192;     // MICRO_BATCH_TOKENS: upper bound per forward/backward
  // optimizers
  double matrix_lr = 0.04;                 // MATRIX_LR (Muon)
  double scalar_lr = 0.04;                 // SCALAR_LR
  double tied_embed_lr = 0.05;             // TIED_EMBED_LR
  double embed_lr = 0.6;                   // EMBED_LR (untied embedding)
  double head_lr = 0.008;                  // HEAD_LR (untied head)
  double muon_momentum = 0.95;             // MUON_MOMENTUM
  double muon_momentum_warmup_start = 0.85;  // MUON_MOMENTUM_WARMUP_START
  long long muon_momentum_warmup_steps = 500;  // MUON_MOMENTUM_WARMUP_STEPS
  int muon_backend_steps = 5;              // MUON_BACKEND_STEPS
  double muon_weight_decay = 0.0;          // MUON_WEIGHT_DECAY: decoupled, W *= 1 - lr * wd (the records' 0.04-0.095)
  bool muon_row_normalize = false;         // MUON_ROW_NORMALIZE: MuonEq-R (each row of the update normalised)
  // MUON_SHARD: data parallel, each rank orthogonalises its share of the matrices and the updates are
  // summed over the ranks (the reference's split; on the CPU bit for bit the unsplit update).
  bool muon_shard = true;
  // Newton-Schulz in bf16 (the reference runs it so on the GPU; the CUDA backend always does). Off:
  // the CPU runs it in the parameters' precision, which is more accurate and as fast on a CPU.
  bool muon_ns_bf16 = false;
  // DETERMINISTIC: the CUDA flash attention's backward without atomics (bit for bit the same every
  // run; the default). Off: the atomics backward (ops/attention_path.hpp). The CPU is deterministic.
  bool deterministic = true;
  double beta1 = 0.9, beta2 = 0.95;        // BETA1, BETA2
  double adam_eps = 1e-8;                  // ADAM_EPS
  double grad_clip_norm = 0.0;             // GRAD_CLIP_NORM; 0: off
  // muon_adam: Muon for block matrices, Adam for the rest (the challenge's recipe). adamw: Adam(W)
  // for every group, each at its group's learning rate (the PRISM harness sets them all equal).
  OptimizerKind optimizer = OptimizerKind::muon_adam;
  double weight_decay = 0.0;               // decoupled, on every Adam group
  LrSchedule lr_schedule = LrSchedule::warmdown;
  long long warmup_iters = -1;             // warmup_cosine only; -1: max(1, iterations / 10)
  double token_recycling = 0.0;            // strength in [0, 1]; 0: off (train/token_recycling.hpp)
  // A variant with two depth schedules (GptSpec.depth.looped) switches to the loop-on one at this
  // fraction of training (of the steps, or of the wall clock when capped); -1: the records' 0.35.
  double loop_enable_at = -1.0;            // LOOP_ENABLE_AT
  // The records' training recipe (TECHNIQUES.md 4.12-4.14, 3.1, 3.4, 13.2).
  // Weight averaging: an fp32 EMA of every parameter (ema <- d ema + (1 - d) theta after each step)
  // and/or SWA, a running mean of the weights (or of the EMA) taken every swa_every steps while the
  // LR multiplier is under swa_threshold. `average` picks the weights scored and exported at the end:
  // none, ema, swa, swa_of_ema, or auto = swa_of_ema with both on, swa with swa_every only, ema with
  // ema_decay only, else none. An option the chosen average does not use is refused.
  double ema_decay = 0.0;                  // EMA_DECAY; 0: off (records 0.997 / 0.9965)
  long long swa_every = 0;                 // SWA_EVERY; 0: off
  double swa_threshold = 0.5;              // SWA_THRESHOLD: SWA collects while the LR multiplier < this
  std::string average = "auto";            // AVERAGE: auto | none | ema | swa | swa_of_ema
  // Late QAT: from the first step whose LR multiplier is at or below qat_threshold (latched, so a
  // warmup_cosine warm-up that starts low switches it on early; 1: from step 0), every Muon matrix
  // is fake-quantised to qat_bits per row for the forward/backward, with a straight-through gradient
  // (train/qat.hpp).
  double qat_threshold = 0.0;              // QAT_THRESHOLD; 0: off
  int qat_bits = 6;                        // QAT_BITS, 2..8
  bool muon_polar_express = false;         // MUON_POLAR_EXPRESS: per-iteration Newton-Schulz coefficients
  double min_lr_scale = 0.0;               // MIN_LR_SCALE: the warmdown's floor (records 0.1)
  // WARMDOWN_FRACTION: the warmdown spans this fraction of the iterations (or of the wall-clock cap
  // when capped); > 0 overrides warmdown_iters (records 0.85).
  double warmdown_fraction = 0.0;
  // Late replay and self-distillation after the main loop (TECHNIQUES.md 7.5, 7.6). Replay: while the
  // LR multiplier is under replay_threshold each rank keeps a FIFO of its last replay_batches
  // micro-batches (train/replay_buffer.hpp); after the main loop, replay_epochs passes over it, one
  // optimizer step per micro-batch at replay_lr_scale times every group's base LR (Muon's momentum
  // as it last was). Distillation: distill_steps steps on new training batches against a frozen
  // teacher holding the EMA (so ema_decay > 0), every group at distill_lr_scale times its base LR,
  // loss alpha tau^2 KL + (1 - alpha) CE (ops/cpu/distill.hpp; on CUDA ops/cuda/distill.cuh, for a
  // GPT with the symmetric softcap). Late QAT, when on,
  // stays on and the EMA keeps updating in both; SWA does not collect. post_train_seconds 0: both
  // run outside the training clock (their time is logged); > 0: inside the wall-clock cap: the main
  // loop stops that many seconds early and the phases stop at the cap.
  long long replay_batches = 0;            // REPLAY_BATCHES; 0: off (the Frugendorff: 100)
  int replay_epochs = 2;                   // REPLAY_EPOCHS
  double replay_lr_scale = 0.1;            // REPLAY_LR_SCALE
  double replay_threshold = 0.2;           // REPLAY_THRESHOLD
  long long distill_steps = 0;             // DISTILL_STEPS; 0: off (the Frugendorff: 50)
  double distill_lr_scale = 0.05;          // DISTILL_LR_SCALE
  double distill_temperature = 2.0;        // DISTILL_TEMPERATURE
  double distill_alpha = 0.7;              // DISTILL_ALPHA
  bool distill_per_sequence = false;       // DISTILL_PER_SEQUENCE: the seed's KL sum per sequence
  double post_train_seconds = 0.0;         // POST_TRAIN_SECONDS
  // data and evaluation
  std::string data_path;                   // DATA_PATH: directory of *_train_*.bin / *_val_*.bin
  std::string tokenizer_path;              // TOKENIZER_PATH: SentencePiece .model
  long long val_tokens = 0;                // score only the first N validation tokens; 0: all
  // EVAL_STRIDE: sliding-window evaluation (train/sliding_eval.hpp) of the final scores with window
  // eval_window() and this stride; validations during training stay standard (their cost). 0: off.
  int eval_stride = 0;
  // EVAL_SEQ_LEN: the sliding window's length when it differs from train_seq_len (the records'
  // eval_seq_len; a longer context than training, with the spec's RoPE scaling); 0: train_seq_len.
  int eval_seq_len = 0;
  static constexpr int kMaxEvalSeqLen = 1 << 17;
  int eval_window() const { return eval_seq_len > 0 ? eval_seq_len : train_seq_len; }
  // run
  std::uint64_t seed = 1337;               // SEED
  std::string run_id;              // RUN_ID
  std::string out_dir;                     // logs, metrics, checkpoint, artifact; empty: none written
  long long checkpoint_every = 0;          // CHECKPOINT_EVERY: a checkpoint in out_dir/checkpoints every N steps; 0: off
  int keep_checkpoints = 2;                // KEEP_CHECKPOINTS: the newest K periodic checkpoints are kept
  // export
  Codec codec = Codec::zlib;
  int codec_level = -1;                    // -1: the codec's default (zlib 9, zstd 22, brotli 11, lzma 9)
  // export quantisers (export/options.hpp; TECHNIQUES.md 5.1-5.5). The defaults are the reference's int8.
  std::string quant = "int8";              // QUANT: attention, MLP and other matrices: int8, rowmax (int6 alias), gptq-lite, gptq
  int quant_bits = 0;                      // QUANT_BITS: 0: 8 for int8, else 6
  int mlp_bits = 0;                        // MLP_BITS: 0: quant_bits (5: the records' int5 MLP)
  std::string embed_quant = "int8";        // EMBED_QUANT: the embedding's quantiser, same names
  int embed_bits = 0;                      // EMBED_BITS: 0: 8 for int8, else 6
  long long quant_min_numel = 65536;       // QUANT_MIN_NUMEL: matrices above this many elements are quantised
  int gptq_calib_batches = 16;             // GPTQ_CALIB_BATCHES: training micro-batches for GPTQ's Hessians
  bool gptq_sdclip = true;                 // GPTQ_SDCLIP: SDClip scales (k * std / Qmax); off: percentile sweep
  int lqer_rank = 0;                       // LQER_RANK: low-rank correction of the worst tensors; 0: off
  int lqer_tensors = 3;                    // LQER_TENSORS: how many tensors LQER corrects
  long long target_bytes = 0;              // TARGET_BYTES: +-1 pruning until the artifact fits; 0: off

  void validate() const {
    PGOLF_CHECK(iterations >= 0, "iterations must be >= 0, got ", iterations);
    PGOLF_CHECK(warmdown_iters >= 0, "warmdown_iters must be >= 0, got ", warmdown_iters);
    PGOLF_CHECK(std::isfinite(max_wallclock_seconds) && max_wallclock_seconds >= 0,
                "max_wallclock_seconds must be >= 0, got ", max_wallclock_seconds);
    PGOLF_CHECK(val_loss_every >= 0, "val_loss_every must be >= 0, got ", val_loss_every);
    PGOLF_CHECK(train_log_every >= 0, "train_log_every must be >= 0, got ", train_log_every);
    PGOLF_CHECK(train_seq_len > 0, "train_seq_len must be positive, got ", train_seq_len);
    PGOLF_CHECK(train_batch_tokens > 0, "train_batch_tokens must be positive, got ", train_batch_tokens);
    PGOLF_CHECK(train_batch_tokens % train_seq_len == 0, "train_batch_tokens (", train_batch_tokens,
                ") must be divisible by train_seq_len (", train_seq_len, ")");
    PGOLF_CHECK(micro_batch_tokens > 0, "micro_batch_tokens must be positive, got ", micro_batch_tokens);
    // Limits that turn an absurd batch into an error now instead of an hours-long step or an
    // overflowing index later.
    PGOLF_CHECK(train_batch_tokens <= kMaxAccumSteps * kMaxMicroBatchTokens, "train_batch_tokens ", train_batch_tokens,
                " exceeds the supported ", kMaxAccumSteps * kMaxMicroBatchTokens, " (", kMaxAccumSteps,
                " micro-batches of ", kMaxMicroBatchTokens, " tokens)");
    PGOLF_CHECK(train_seq_len <= kMaxSeqLen, "train_seq_len ", train_seq_len, " exceeds the supported ", kMaxSeqLen);
    PGOLF_CHECK(accum_steps() <= kMaxAccumSteps, "train_batch_tokens ", train_batch_tokens, " needs ",
                accum_steps(), " micro-batches of at most micro_batch_tokens ", micro_batch_tokens,
                " per optimizer step (at most ", kMaxAccumSteps,
                "): lower train_batch_tokens or raise micro_batch_tokens");
    PGOLF_CHECK(micro_batch_tokens_used() <= kMaxMicroBatchTokens, "a micro-batch of ", micro_batch_tokens_used(),
                " tokens (", micro_batch_rows_ll(), " sequences of ", train_seq_len, ") exceeds the supported ",
                kMaxMicroBatchTokens, ": lower micro_batch_tokens");
    PGOLF_CHECK(checkpoint_every >= 0, "checkpoint_every must be >= 0, got ", checkpoint_every);
    PGOLF_CHECK(keep_checkpoints >= 1, "keep_checkpoints must be >= 1, got ", keep_checkpoints);
    for (auto [name, v] : {std::pair{"matrix_lr", matrix_lr}, {"scalar_lr", scalar_lr}, {"tied_embed_lr", tied_embed_lr},
                           {"embed_lr", embed_lr}, {"head_lr", head_lr}, {"adam_eps", adam_eps},
                           {"grad_clip_norm", grad_clip_norm}})
      PGOLF_CHECK(std::isfinite(v) && v >= 0, name, " must be a finite number >= 0, got ", v);
    for (auto [name, v] : {std::pair{"muon_momentum", muon_momentum}, {"muon_momentum_warmup_start", muon_momentum_warmup_start},
                           {"beta1", beta1}, {"beta2", beta2}})
      PGOLF_CHECK(v >= 0 && v < 1, name, " must be in [0, 1), got ", v);
    PGOLF_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay must be a finite number >= 0, got ",
                weight_decay);
    PGOLF_CHECK(token_recycling >= 0 && token_recycling <= 1, "token_recycling must be in [0, 1], got ",
                token_recycling);
    PGOLF_CHECK(warmup_iters >= -1, "warmup_iters must be >= 0 (or -1 for iterations / 10), got ", warmup_iters);
    PGOLF_CHECK(muon_momentum_warmup_steps >= 0, "muon_momentum_warmup_steps must be >= 0, got ",
                muon_momentum_warmup_steps);
    PGOLF_CHECK(muon_backend_steps > 0, "muon_backend_steps must be positive, got ", muon_backend_steps);
    PGOLF_CHECK(std::isfinite(muon_weight_decay) && muon_weight_decay >= 0,
                "muon_weight_decay must be a finite number >= 0, got ", muon_weight_decay);
    PGOLF_CHECK(loop_enable_at == -1.0 || (loop_enable_at >= 0 && loop_enable_at <= 1),
                "loop_enable_at must be a fraction of training in [0, 1] (or -1 for the default), got ", loop_enable_at);
    validate_recipe();
    PGOLF_CHECK(val_tokens >= 0, "val_tokens must be >= 0, got ", val_tokens);
    PGOLF_CHECK(val_tokens == 0 || val_tokens > train_seq_len, "val_tokens (", val_tokens,
                ") must exceed train_seq_len (", train_seq_len, ") to score one sequence");
    PGOLF_CHECK(eval_seq_len >= 0 && eval_seq_len <= kMaxEvalSeqLen, "eval_seq_len must be in 1..", kMaxEvalSeqLen,
                " (the sliding window), or 0 for train_seq_len; got ", eval_seq_len);
    PGOLF_CHECK(eval_seq_len == 0 || eval_stride > 0, "eval_seq_len (", eval_seq_len,
                ") is the sliding window's length, but eval_stride is 0 (standard evaluation): set eval_stride too");
    PGOLF_CHECK(eval_stride >= 0 && eval_stride <= eval_window(), "eval_stride must be in 1..",
                eval_seq_len > 0 ? "eval_seq_len (" : "train_seq_len (", eval_window(),
                ") for sliding-window evaluation, or 0 for the standard one; got ", eval_stride);
    codec_level_checked();
    PGOLF_CHECK(quant_min_numel >= 0, "quant_min_numel must be >= 0, got ", quant_min_numel);
    PGOLF_CHECK(gptq_calib_batches >= 1, "gptq_calib_batches must be >= 1, got ", gptq_calib_batches);
    PGOLF_CHECK(lqer_rank >= 0 && lqer_rank <= 16, "lqer_rank must be 0..16, got ", lqer_rank);
    PGOLF_CHECK(lqer_tensors >= 1, "lqer_tensors must be >= 1, got ", lqer_tensors);
    PGOLF_CHECK(target_bytes >= 0, "target_bytes must be >= 0, got ", target_bytes);
    export_options().validate();
  }

  // The export options these fields describe (quant_choice checks the names and bits).
  static QuantChoice quant_choice(const std::string& name, int bits, const char* field) {
    if (name == "int8") {
      PGOLF_CHECK(bits == 0 || bits == 8, field, ": int8 is 8 bits, got ", bits, " (use rowmax for other widths)");
      return {Quantiser::int8_clip, 8};
    }
    PGOLF_CHECK(name == "rowmax" || name == "int6" || name == "gptq-lite" || name == "gptq", field, ": unknown quantiser '",
                name, "' (expected int8, rowmax, int6, gptq-lite or gptq)");
    const int b = bits == 0 ? 6 : bits;
    check_quant_bits(b, field);
    return {name == "gptq-lite" ? Quantiser::gptq_lite : name == "gptq" ? Quantiser::gptq : Quantiser::rowmax, b};
  }
  ExportOptions export_options() const {
    ExportOptions o;
    o.attn = o.other = quant_choice(quant, quant_bits, "quant");
    o.mlp = quant_choice(quant, mlp_bits != 0 ? mlp_bits : quant_bits, "quant with mlp_bits");
    o.embed = quant_choice(embed_quant, embed_bits, "embed_quant");
    o.quant_min_numel = std::size_t(std::max(0LL, quant_min_numel));
    o.gptq_sdclip = gptq_sdclip;
    o.lqer_rank = lqer_rank;
    o.lqer_tensors = lqer_tensors;
    o.target_bytes = std::size_t(std::max(0LL, target_bytes));
    return o;
  }

  // The resolved `average` (auto replaced by its rule).
  std::string average_kind() const {
    if (average != "auto") return average;
    if (swa_every > 0) return ema_decay > 0 ? "swa_of_ema" : "swa";
    return ema_decay > 0 ? "ema" : "none";
  }
  void validate_recipe() const {
    PGOLF_CHECK(std::isfinite(ema_decay) && ema_decay >= 0 && ema_decay < 1, "ema_decay must be in [0, 1), got ", ema_decay);
    PGOLF_CHECK(swa_every >= 0, "swa_every must be >= 0, got ", swa_every);
    PGOLF_CHECK(swa_threshold > 0 && swa_threshold <= 1, "swa_threshold must be in (0, 1], got ", swa_threshold);
    PGOLF_CHECK(average == "auto" || average == "none" || average == "ema" || average == "swa" || average == "swa_of_ema",
                "average must be auto, none, ema, swa or swa_of_ema, got '", average, "'");
    const std::string a = average_kind();
    const bool uses_ema = a == "ema" || a == "swa_of_ema", uses_swa = a == "swa" || a == "swa_of_ema";
    PGOLF_CHECK(!uses_ema || ema_decay > 0, "average ", a, " needs an EMA: set ema_decay > 0");
    PGOLF_CHECK(!uses_swa || swa_every > 0, "average ", a, " needs swa_every > 0");
    PGOLF_CHECK(uses_ema || ema_decay == 0, "ema_decay is ", ema_decay, " but average ", a,
                " does not use the EMA (choose average ema or swa_of_ema, or set ema_decay 0)");
    PGOLF_CHECK(uses_swa || swa_every == 0, "swa_every is ", swa_every, " but average ", a,
                " does not use SWA (choose average swa or swa_of_ema, or set swa_every 0)");
    PGOLF_CHECK(std::isfinite(qat_threshold) && qat_threshold >= 0 && qat_threshold <= 1,
                "qat_threshold must be in [0, 1] (0: off), got ", qat_threshold);
    PGOLF_CHECK(qat_bits >= 2 && qat_bits <= 8, "qat_bits must be in [2, 8], got ", qat_bits);
    PGOLF_CHECK(std::isfinite(min_lr_scale) && min_lr_scale >= 0 && min_lr_scale < 1,
                "min_lr_scale must be in [0, 1), got ", min_lr_scale);
    PGOLF_CHECK(std::isfinite(warmdown_fraction) && warmdown_fraction >= 0 && warmdown_fraction <= 1,
                "warmdown_fraction must be in [0, 1] (0: use warmdown_iters), got ", warmdown_fraction);
    validate_post_training();
  }
  void validate_post_training() const {
    PGOLF_CHECK(replay_batches >= 0 && replay_batches <= kMaxAccumSteps, "replay_batches must be in [0, ",
                kMaxAccumSteps, "], got ", replay_batches);
    PGOLF_CHECK(replay_epochs >= 1, "replay_epochs must be >= 1, got ", replay_epochs);
    PGOLF_CHECK(std::isfinite(replay_lr_scale) && replay_lr_scale >= 0, "replay_lr_scale must be a finite number >= 0, got ",
                replay_lr_scale);
    PGOLF_CHECK(replay_threshold > 0 && replay_threshold <= 1, "replay_threshold must be in (0, 1], got ", replay_threshold);
    PGOLF_CHECK(distill_steps >= 0, "distill_steps must be >= 0, got ", distill_steps);
    PGOLF_CHECK(distill_steps == 0 || ema_decay > 0, "distill_steps is ", distill_steps,
                " but the teacher is the EMA of the weights: set ema_decay > 0");
    PGOLF_CHECK(std::isfinite(distill_lr_scale) && distill_lr_scale >= 0,
                "distill_lr_scale must be a finite number >= 0, got ", distill_lr_scale);
    PGOLF_CHECK(std::isfinite(distill_temperature) && distill_temperature > 0, "distill_temperature must be > 0, got ",
                distill_temperature);
    PGOLF_CHECK(distill_alpha >= 0 && distill_alpha <= 1, "distill_alpha must be in [0, 1], got ", distill_alpha);
    PGOLF_CHECK(std::isfinite(post_train_seconds) && post_train_seconds >= 0, "post_train_seconds must be >= 0, got ",
                post_train_seconds);
    if (post_train_seconds > 0) {
      PGOLF_CHECK(has_post_train(), "post_train_seconds is ", post_train_seconds,
                  " but neither replay (replay_batches) nor distillation (distill_steps) is on");
      PGOLF_CHECK(max_wallclock_seconds > post_train_seconds, "post_train_seconds (", post_train_seconds,
                  ") reserves time inside the wall-clock cap: max_wallclock_seconds (", max_wallclock_seconds,
                  ") must exceed it");
    }
  }

  long long warmup_steps() const { return warmup_iters >= 0 ? warmup_iters : std::max(1LL, iterations / 10); }

  int codec_level_checked() const { return pgolf::codec_level(codec, codec_level); }

  static constexpr int kMaxSeqLen = 1 << 20;
  static constexpr long long kMaxAccumSteps = 1 << 16;
  static constexpr long long kMaxMicroBatchTokens = 1LL << 31;

  // Sequences per optimizer step, per micro-step, and the accumulation count that joins them: the
  // fewest micro-steps whose micro-batch fits micro_batch_tokens and divides the batch exactly (the
  // smallest divisor of the rows at or above the bound, found in O(sqrt(rows)) so no batch stalls).
  // With world > 1 ranks each rank takes batch_rows() / world of them (world_rows_check()).
  long long batch_rows(int world = 1) const { return train_batch_tokens / train_seq_len / world; }
  void world_rows_check(int world) const {
    PGOLF_CHECK(train_batch_tokens / train_seq_len % world == 0, "train_batch_tokens (", train_batch_tokens, ") holds ",
                train_batch_tokens / train_seq_len, " sequences of ", train_seq_len,
                " tokens, not divisible by the world size ", world);
  }
  long long accum_steps(int world = 1) const {
    const long long rows = batch_rows(world);
    const long long fit = std::max(1LL, micro_batch_tokens / train_seq_len);
    const long long lo = (rows + fit - 1) / fit;
    long long best = rows;
    for (long long d = 1; d * d <= rows; ++d) {
      if (rows % d != 0) continue;
      if (d >= lo) best = std::min(best, d);
      if (rows / d >= lo) best = std::min(best, rows / d);
    }
    return best;
  }
  // Late replay or self-distillation runs after the main loop (the end phase).
  bool has_post_train() const { return replay_batches > 0 || distill_steps > 0; }
  int grad_accum_steps(int world = 1) const { return int(std::min<long long>(accum_steps(world), INT_MAX)); }
  long long micro_batch_rows_ll(int world = 1) const { return batch_rows(world) / accum_steps(world); }
  long long micro_batch_tokens_used() const { return micro_batch_rows_ll() * train_seq_len; }
  int micro_batch_rows(int world = 1) const { return int(micro_batch_rows_ll(world)); }

  std::string to_json() const {
    return JsonLine()
        .add("event", "config")
        .add("iterations", iterations)
        .add("warmdown_iters", warmdown_iters)
        .add("max_wallclock_seconds", max_wallclock_seconds)
        .add("val_loss_every", val_loss_every)
        .add("train_log_every", train_log_every)
        .add("train_batch_tokens", train_batch_tokens)
        .add("train_seq_len", train_seq_len)
        .add("micro_batch_tokens", micro_batch_tokens)
        .add("grad_accum_steps", grad_accum_steps())
        .add("matrix_lr", matrix_lr)
        .add("scalar_lr", scalar_lr)
        .add("tied_embed_lr", tied_embed_lr)
        .add("embed_lr", embed_lr)
        .add("head_lr", head_lr)
        .add("muon_momentum", muon_momentum)
        .add("muon_momentum_warmup_start", muon_momentum_warmup_start)
        .add("muon_momentum_warmup_steps", muon_momentum_warmup_steps)
        .add("muon_backend_steps", muon_backend_steps)
        .add("muon_weight_decay", muon_weight_decay)
        .add("muon_row_normalize", muon_row_normalize)
        .add("muon_shard", muon_shard)
        .add("muon_ns_bf16", muon_ns_bf16)
        .add("beta1", beta1)
        .add("beta2", beta2)
        .add("adam_eps", adam_eps)
        .add("grad_clip_norm", grad_clip_norm)
        .add("optimizer", to_string(optimizer))
        .add("weight_decay", weight_decay)
        .add("lr_schedule", to_string(lr_schedule))
        .add("warmup_iters", warmup_steps())
        .add("token_recycling", token_recycling)
        .add("loop_enable_at", loop_enable_at)
        .add("ema_decay", ema_decay)
        .add("swa_every", swa_every)
        .add("swa_threshold", swa_threshold)
        .add("average", average_kind())
        .add("qat_threshold", qat_threshold)
        .add("qat_bits", qat_bits)
        .add("muon_polar_express", muon_polar_express)
        .add("min_lr_scale", min_lr_scale)
        .add("warmdown_fraction", warmdown_fraction)
        .add("replay_batches", replay_batches)
        .add("replay_epochs", replay_epochs)
        .add("replay_lr_scale", replay_lr_scale)
        .add("replay_threshold", replay_threshold)
        .add("distill_steps", distill_steps)
        .add("distill_lr_scale", distill_lr_scale)
        .add("distill_temperature", distill_temperature)
        .add("distill_alpha", distill_alpha)
        .add("distill_per_sequence", distill_per_sequence)
        .add("post_train_seconds", post_train_seconds)
        .add("data_path", data_path)
        .add("tokenizer_path", tokenizer_path)
        .add("val_tokens", val_tokens)
        .add("eval_stride", eval_stride)
        .add("eval_seq_len", eval_seq_len)
        .add("seed", seed)
        .add("run_id", run_id)
        .add("out_dir", out_dir)
        .add("checkpoint_every", checkpoint_every)
        .add("keep_checkpoints", keep_checkpoints)
        .add("codec", to_string(codec))
        .add("codec_level", codec_level_checked())
        .add("quant", quant)
        .add("quant_bits", quant_bits)
        .add("mlp_bits", mlp_bits)
        .add("embed_quant", embed_quant)
        .add("embed_bits", embed_bits)
        .add("quant_min_numel", quant_min_numel)
        .add("gptq_calib_batches", gptq_calib_batches)
        .add("gptq_sdclip", gptq_sdclip)
        .add("lqer_rank", lqer_rank)
        .add("lqer_tensors", lqer_tensors)
        .add("target_bytes", target_bytes)
        .add("deterministic", deterministic)
        .str();
  }
};

}  // namespace pgolf
