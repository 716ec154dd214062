// app::main<Model, GpuModel>: the command line every variant binary shares.
//
//   <binary> train  [flags]              train, validate, save checkpoints, export, score the round trip
//   <binary> eval   FILE [flags]         val_loss / val_bpb of a checkpoint, an artifact or a safetensors file
//   <binary> export CHECKPOINT [flags]   write the compressed artifact and score its round trip;
//                                        --format safetensors: the weights as a state dict instead
// eval and export of a checkpoint read the weights its run exported (the EMA / SWA average the run
// selected, so `export RUN/checkpoint.bin` rebuilds RUN/model.pgolf), and log which ("weights:ema
// decay:0.997 (from the checkpoint)"); --weights raw|ema|swa picks one instead (auto: the run's).
//   <binary> import FILE -o CHECKPOINT   a safetensors state dict (the PyTorch reference's names) as a
//                                        checkpoint that eval, export and train --resume take; scored
//   <binary> info                        the parameter table: names, shapes, optimizer groups, export policies
//   <binary> submit RUN_DIR [-o DIR]     a records-style submission folder with the packed code (app/submit.hpp)
//   <binary> verify DIR                  build the folder's packed code, score its artifact, check bytes and score
//
// --eval-stride S (EVAL_STRIDE) > 0: the final scores are also sliding-window ones
// (train/sliding_eval.hpp, window train_seq_len): after the last validation
// (final_prequant_sliding_window), after the round trip (final_int8_<codec>_sliding_window, after the
// standard roundtrip lines, as the records print them), and `eval` scores by sliding window only.
// Validations during training stay standard.
//
// safetensors (export/safetensors.hpp, docs/safetensors.md): a reference GPT's file holds the
// reference's state dict, name for name and shape for shape, so torch's load_state_dict(strict=True)
// takes it; the model's scalar is stored (F32 in a variant binary), and reading takes F64, F32, F16
// and BF16. A model with techniques the reference lacks is written under pgolf's own names and the
// metadata says so (pgolf.naming).
//
// A binary built as a point of an ablation grid (pgolf_add_ablation) prints its overrides in
// `info` and the training log ("ablation: mlp.mult=2"); metrics.jsonl's "variant" record carries
// them with the parameter count.
//
// Every TrainConfig field is a flag (app/command_line.hpp): a flag typed on the command line beats
// its environment variable, which beats the variant's preset. Values are checked before any work
// starts. A run folder is never overwritten by accident: `train` refuses a non-empty --out-dir
// unless --overwrite is given (which removes only the run files it finds there) or the run resumes
// from a checkpoint inside it (--resume latest or a file there); `export` refuses to replace an
// artifact or a safetensors file, and `import` a checkpoint, without --overwrite. A resume whose
// --iterations is at or below the checkpoint's step stops with that message, except at the last step
// from a checkpoint written before or inside the end phase (late replay, self-distillation), which
// runs it, or the rest of it.
//
// --device auto|cpu|cuda picks the backend at run time between the two specialisations a variant
// binary carries: Model (CPU) and, when built with CUDA (pgolf_add_variant(... CUDA)), GpuModel.
// auto means cuda when a device is present. On cuda the micro-batch defaults to 65,536 tokens
// unless --micro-batch-tokens / MICRO_BATCH_TOKENS says otherwise. Checkpoints and artifacts are
// the same files on both backends.
//
// Sizes: "model bytes" is the artifact file (header + compressed payload). "code bytes" is what a
// submission ships besides it, what `submit` writes: code.shar.xz + build.sh, the variant's source
// and the library headers it includes, without comments and blank lines, LZMA-packed
// (app/pack_code.hpp), packed from the sources the binary was built from when a run exports. Where
// those sources are gone, the log says so and counts PGOLF_CODE_BYTES instead (source + every
// header, counted by pgolf_add_variant() at configure time; 0 when built without it).
//
// Data parallel: launched by mpirun (CPU: MPI; CUDA: NCCL) or with torchrun's environment (CUDA:
// NCCL), the binary joins the job (dist/launch.hpp, docs/distributed.md); rank 0 logs and writes
// files, and an error on any rank ends the whole job with that rank named.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>

#include "pgolf/app/ablation.hpp"
#include "pgolf/app/command_line.hpp"
#include "pgolf/app/submit.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/format.hpp"
#include "pgolf/core/json.hpp"
#include "pgolf/dist/launch.hpp"
#include "pgolf/export/artifact.hpp"
#include "pgolf/export/calibration.hpp"
#include "pgolf/export/safetensors.hpp"
#include "pgolf/export/state_dict.hpp"
#include "pgolf/train/checkpoint.hpp"
#include "pgolf/train/checkpoint_dir.hpp"
#include "pgolf/train/config.hpp"
#include "pgolf/train/run_log.hpp"
#include "pgolf/train/trainer.hpp"

namespace pgolf::app {

namespace detail {

// GPTQ's Hessians from training micro-batches run forward through the model (export/calibration.hpp):
// the CPU products' hook on the CPU backend, Cuda::linear's on the GPU (the inputs the GPU model
// computes, in bf16, summed in fp32 on the device).
template <class Model>
TensorHessians calibrate_gptq(Trainer<Model>& tr, RunLog& log, ExportOptions& o) {
  using T = typename Model::Scalar;
  if (!o.uses(Quantiser::gptq)) return {};
  const TrainConfig& c = tr.config();
  PGOLF_CHECK(dist::world().size() == 1, "GPTQ export calibrates on one process; this run has ",
              dist::world().size(), " (export the checkpoint with one process)");
  const auto t0 = std::chrono::steady_clock::now();
  const int accum = c.grad_accum_steps(1);
  auto collect = [&](auto& hc) {
    hc.start();
    for (int b = 0; b < c.gptq_calib_batches; ++b) {
      const data::Batch batch = tr.data().next_batch(c, accum);
      (void)tr.model().forward(batch.x, batch.y);
      hc.end_batch();
    }
    hc.stop();
    return hc.hessians();
  };
  TensorHessians H;
  const char* where = "CPU";
  if constexpr (std::is_same_v<typename Model::Backend, Cpu<T>>) {
    HessianCollector<T> hc(Model::param_table, std::span<const T>(tr.model().params()),
                           gptq_rows(Model::param_table, o));
    H = collect(hc);
  } else {
#ifdef __CUDACC__
    CudaHessianCollector hc(Model::device_table, tr.model().runtime().weights(), gptq_rows(Model::param_table, o));
    H = collect(hc);
    where = "GPU";
#else
    static_assert(sizeof(Model) == 0, "a GPU model outside a CUDA translation unit");
#endif
  }
  int found = 0;
  for (const auto& h : H) found += !h.empty();
  log.print(format("gptq: calibrated %d tensors on %d training micro-batches (%s) in %.0fms", found,
                   c.gptq_calib_batches, where,
                   std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()));
  return H;
}

// Writes the artifact, reads it back from disk, scores it, and reports sizes in the reference's lines
// (the format named as the records do, e.g. "int6+lzma", "final_int6_lzma_roundtrip").
template <class Model>
int export_and_score(Trainer<Model>& tr, RunLog& log, const std::filesystem::path& artifact_path, const CodeCount& code) {
  const long long code_bytes = code.counted;
  using T = typename Model::Scalar;
  const TrainConfig& c = tr.config();
  const std::string codec = std::string(to_string(c.codec));
  const std::size_t raw_fp32 = Model::num_params * sizeof(float);
  log.print(format("Serialized model: %zu bytes", raw_fp32));
  log.print(format("Code size: %lld bytes", code_bytes));
  if (code.pack)
    log.print(format("code: %s %zu + %s %zu bytes packed; %zu files, %zu bytes as written, %zu without comments and "
                     "blank lines", kPackedCodeFile, code.pack->packed.size(), kBuildScriptFile, code.pack->script.size(),
                     code.pack->files.size() - 1, code.pack->raw_bytes, code.pack->stripped_bytes));
  else
    log.print("code: " + code.note);
  using Policy = typename Trainer<Model>::Policy;
  ExportOptions opts = c.export_options();
  const std::string quant = opts.format_name();
  if (!opts.is_reference()) log.print("quantisers: " + opts.describe());
  const TensorHessians hessians = calibrate_gptq(tr, log, opts);
  const std::vector<T> trained = Policy::params_to_host(tr.model());
  std::size_t pruned = 0;
  const auto bytes = encode_artifact(Model::param_table, std::span<const T>(trained), c.codec, c.codec_level, opts,
                                     &hessians, &pruned);
  if (opts.target_bytes > 0)
    log.print(format("pruning: zeroed %zu +-1 codes to fit %zu bytes", pruned, opts.target_bytes));
  const bool root = dist::world().is_root();  // data parallel: rank 0 writes, the others decode their copy
  if (root) write_file_bytes(artifact_path, bytes);

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<T> loaded(Model::num_params);
  const ArtifactInfo info = decode_artifact(std::span<const std::uint8_t>(root ? read_file_bytes(artifact_path) : bytes),
                                            Model::param_table, std::span<T>(loaded), artifact_path.string());
  Policy::params_from_host(tr.model(), std::span<const T>(loaded));
  const BpbMeter m = tr.validate();
  const double eval_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log.print(format("Serialized model %s+%s: %zu bytes (payload:%zu raw_fp32:%zu payload_ratio:%.2fx)", quant.c_str(),
                   codec.c_str(), info.file_bytes, info.raw_bytes, raw_fp32, double(raw_fp32) / double(info.raw_bytes)));
  log.print(format("Total submission size %s+%s: %lld bytes", quant.c_str(), codec.c_str(),
                   (long long)info.file_bytes + code_bytes));
  log.print(format("artifact: %s", artifact_path.string().c_str()));
  log.print(format("final_%s_%s_roundtrip val_loss:%.4f val_bpb:%.4f eval_time:%.0fms", quant.c_str(), codec.c_str(),
                   m.val_loss(), m.val_bpb(), eval_ms));
  log.print(format("final_%s_%s_roundtrip_exact val_loss:%.8f val_bpb:%.8f", quant.c_str(), codec.c_str(), m.val_loss(),
                   m.val_bpb()));
  JsonLine metric;
  metric.add("event", "export").add("artifact", artifact_path.string()).add("codec", codec);
  if (!opts.is_reference())
    metric.add("quant", quant).add("quantisers", opts.describe()).add("format_version", info.version);
  metric.add("model_bytes", info.file_bytes)
      .add("payload_bytes", info.raw_bytes)
      .add("code_bytes", code_bytes)
      .add("code_raw_bytes", code.pack ? (long long)code.pack->raw_bytes : -1LL)
      .add("code_stripped_bytes", code.pack ? (long long)code.pack->stripped_bytes : -1LL)
      .add("total_bytes", (long long)info.file_bytes + code_bytes)
      .add("roundtrip_val_loss", m.val_loss())
      .add("roundtrip_val_bpb", m.val_bpb());
  if (tr.sliding_eval()) {  // the records' submission score: the round-tripped weights, sliding window
    const auto t1 = std::chrono::steady_clock::now();
    const BpbMeter sw = tr.validate_final();
    const double sw_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
    log.print(format("final_%s_%s_sliding_window val_loss:%.4f val_bpb:%.4f stride:%d seq_len:%d eval_time:%.0fms",
                     quant.c_str(), codec.c_str(), sw.val_loss(), sw.val_bpb(), c.eval_stride, c.eval_window(),
                     sw_ms));
    log.print(format("final_%s_%s_sliding_window_exact val_loss:%.8f val_bpb:%.8f", quant.c_str(), codec.c_str(),
                     sw.val_loss(), sw.val_bpb()));
    metric.add("eval_stride", c.eval_stride)
        .add("eval_seq_len", c.eval_window())
        .add("roundtrip_sliding_val_loss", sw.val_loss())
        .add("roundtrip_sliding_val_bpb", sw.val_bpb());
  }
  log.metric(metric.str());
  Policy::params_from_host(tr.model(), std::span<const T>(trained));
  return 0;
}

// The files a run writes into its folder (what --overwrite removes; nothing else is touched).
inline std::vector<std::filesystem::path> run_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  for (const char* name : {"train.log", "metrics.jsonl", "checkpoint.bin", "model.pgolf"})
    if (std::filesystem::is_regular_file(dir / name, ec)) found.push_back(dir / name);
  for (const auto& e : CheckpointDir(dir, 1).periodic()) found.push_back(e.path);
  return found;
}

inline bool inside(const std::filesystem::path& file, const std::filesystem::path& dir) {
  const auto f = std::filesystem::weakly_canonical(file), d = std::filesystem::weakly_canonical(dir);
  const auto mismatch = std::mismatch(d.begin(), d.end(), f.begin(), f.end());
  return mismatch.first == d.end();
}

// Decides, before anything is written, whether `train` may use its out dir, and resolves
// --resume latest. Returns the checkpoint to resume from (empty: a new run).
template <class Model>
std::string prepare_run_dir(const Command& cmd) {
  namespace fs = std::filesystem;
  using T = typename Model::Scalar;
  const fs::path out = cmd.config.out_dir;
  std::error_code ec;
  const bool non_empty = fs::is_directory(out, ec) && !fs::is_empty(out, ec);
  PGOLF_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "--out-dir ", out.string(), " exists and is not a directory");
  std::string resume = cmd.resume;
  if (resume == "latest") {
    PGOLF_CHECK(!cmd.overwrite, "--resume latest continues the run in --out-dir; --overwrite would delete it");
    const auto found = CheckpointDir(out, cmd.config.keep_checkpoints)
                           .latest<T>(table_fingerprint(Model::param_table),
                                      [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); });
    PGOLF_CHECK(found.has_value(), "--resume latest: no checkpoint of this model in ", out.string(),
                " (looked for checkpoint.bin and checkpoints/step_*.bin; name the run with --out-dir)");
    resume = found->string();
  }
  if (!resume.empty()) {
    const auto [step, post_trained] = CheckpointDir::peek_header(resume);
    const TrainConfig& c = cmd.config;
    // At the last step, a checkpoint written before the end phase (late replay, self-distillation)
    // still has that phase to run.
    const bool end_phase_left = step == c.iterations && c.has_post_train() && !post_trained;
    PGOLF_CHECK(step < c.iterations || end_phase_left, "the checkpoint ", resume, " is at step ", step,
                " and --iterations is ", c.iterations, ": nothing left to train (raise --iterations above ", step, ")");
  }
  if (non_empty && !cmd.overwrite) {
    PGOLF_CHECK(!resume.empty() && inside(resume, out), "--out-dir ", out.string(),
                " is not empty (an earlier run?); refusing to overwrite it. Choose a new --out-dir, resume the run "
                "there with --resume latest, or pass --overwrite to replace its run files");
  }
  if (cmd.overwrite && non_empty) {
    PGOLF_CHECK(resume.empty() || !inside(resume, out), "--overwrite would delete the checkpoint --resume names (",
                resume, ")");
    const auto files = run_files(out);
    for (const auto& f : files) fs::remove(f);
    fs::remove(out / "checkpoints", ec);  // only if now empty
    std::printf("overwrite: removed %zu run files in %s\n", files.size(), out.string().c_str());
  }
  for (const auto& f : CheckpointDir(out, 1).remove_stale())
    std::printf("removed stale temp file of an interrupted write: %s\n", f.string().c_str());
  return resume;
}

template <class Model>
int run(const Variant& variant, const Command& cmd) {
  const TrainConfig& cfg = cmd.config;
  const std::filesystem::path out = cfg.out_dir;
  if (cmd.kind == Command::train) {
    std::error_code ec;
    const bool fresh = !std::filesystem::exists(out, ec) || std::filesystem::is_empty(out, ec);
    // Data parallel: rank 0 checks and prepares the run folder; the others take its answer.
    const std::string resume =
        dist::world().broadcast_string(dist::world().is_root() ? prepare_run_dir<Model>(cmd) : std::string());
    RunLog log({.out_dir = out, .console = true, .progress = !cmd.no_progress});
    log.metric(cfg.to_json());
    // A run that cannot start (missing data, a model too large for the machine) leaves a folder
    // it found empty as it was, so fixing the flag and running again is not refused.
    std::optional<Trainer<Model>> made;
    try {
      made.emplace(cfg, log);
    } catch (...) {
      if (fresh && dist::world().is_root()) {
        for (const auto& f : run_files(out)) std::filesystem::remove(f, ec);
        std::filesystem::remove(out, ec);  // only if empty
      }
      throw;
    }
    Trainer<Model>& tr = *made;
    const CodeCount code = count_code(variant.name, {variant.source, variant.include_dir, variant.ablation_header},
                                      variant.code_bytes);
    log.print(format("variant:%s device:%s run_id:%s", variant.name.c_str(), cmd.device.c_str(), cfg.run_id.c_str()));
    log.print(format("model_params:%zu", Model::num_params));
    if (*ablation::point()) log.print(format("ablation:%s", ablation::point()));
    log.metric(JsonLine()
                   .add("event", "variant")
                   .add("variant", variant.name)
                   .add("model_params", Model::num_params)
                   .add("code_bytes", code.counted)
                   .add("ablation", ablation::point())
                   .str());
    if (cfg.checkpoint_every > 0)
      log.print(format("checkpoint_every:%lld keep_checkpoints:%d dir:%s", cfg.checkpoint_every, cfg.keep_checkpoints,
                       tr.checkpoint_dir().periodic_dir().string().c_str()));
    log.print(format("train_batch_tokens:%lld train_seq_len:%d grad_accum_steps:%d micro_batch_seqs:%d "
                     "iterations:%lld max_wallclock_seconds:%.3f",
                     cfg.train_batch_tokens, cfg.train_seq_len, cfg.grad_accum_steps(dist::world().size()),
                     cfg.micro_batch_rows(dist::world().size()),  // per rank
                     cfg.iterations, cfg.max_wallclock_seconds));
    log.print(format("val_loader:path=%s tokens:%zu", cfg.data_path.c_str(), tr.data().val_tokens().size() - 1));
    log.print(format("seed:%llu", (unsigned long long)cfg.seed));
    if (cfg.eval_stride > 0)
      log.print(format("final_eval_mode:sliding_window stride:%d seq_len:%d batch_seqs:%d (validation during training: "
                       "standard)", cfg.eval_stride, cfg.eval_window(),
                       int(std::max<long long>(1, (long long)tr.model().batch() * tr.model().seq_len() / cfg.eval_window()))));
    if (dist::world().size() > 1) log.print(format("world_size:%d communicator:%s", dist::world().size(), dist::world().kind()));
    if (!resume.empty()) {
      tr.load_checkpoint(resume);
      PGOLF_CHECK(tr.step() < cfg.iterations || (tr.step() == cfg.iterations && tr.post_train_pending()),
                  "the checkpoint ", resume, " is at step ", tr.step(), " and --iterations is ", cfg.iterations,
                  ": nothing left to train (raise --iterations above ", tr.step(), ")");
      log.print(format("resumed:%s step:%lld train_time:%.0fms%s", resume.c_str(), tr.step(), tr.train_ms(),
                       tr.step() < cfg.iterations ? ""
                       : tr.end_steps() > 0
                           ? format(" (%lld steps into the end phase: late replay, self-distillation)", tr.end_steps()).c_str()
                           : " (before the end phase: late replay, self-distillation)"));
    }
    tr.run();
    if (dist::world().is_root()) tr.checkpoint_dir().write_final(encode_checkpoint(tr.checkpoint()));
    log.print(format("checkpoint: %s", (out / "checkpoint.bin").string().c_str()));
    return export_and_score(tr, log, out / "model.pgolf", code);
  }

  using T = typename Model::Scalar;
  const bool root = dist::world().is_root();
  // Checked before the data is read, so a refusal is immediate.
  const std::filesystem::path target =
      !cmd.output.empty()                              ? std::filesystem::path(cmd.output)
      : cmd.kind == Command::exp && cmd.format == "safetensors" ? out / "model.safetensors"
                                                                : out / "model.pgolf";
  if (cmd.kind == Command::exp || cmd.kind == Command::import_)
    PGOLF_CHECK(cmd.overwrite || !std::filesystem::exists(target),
                cmd.kind == Command::import_ ? "checkpoint " : cmd.format == "safetensors" ? "safetensors file " : "artifact ",
                target.string(), " exists; refusing to replace it (choose another -o, or pass --overwrite)");
  RunLog log({.out_dir = {}, .console = true, .progress = false});
  Trainer<Model> tr(cfg, log);
  // A safetensors state dict into the model (every tensor checked first; safetensors.hpp).
  auto load_safetensors = [&](std::span<const std::uint8_t> bytes, const std::string& what) {
    std::vector<T> loaded(Model::num_params);
    const StateDictNaming naming = state_dict_naming<Model>();
    const SafetensorsInfo info = decode_safetensors(bytes, Model::param_table, std::span<T>(loaded), what, &naming);
    Trainer<Model>::Policy::params_from_host(tr.model(), std::span<const T>(loaded));
    tr.use_final_phase();
    std::string dtypes;
    for (const auto& [d, n] : info.dtypes) dtypes += (dtypes.empty() ? "" : ",") + d + "=" + std::to_string(n);
    const auto stated = info.metadata.find("pgolf.naming");
    log.print(format("safetensors:%s tensors:%zu dtypes:%s naming:%s", what.c_str(), info.tensors, dtypes.c_str(),
                     stated == info.metadata.end() ? "unstated" : stated->second.c_str()));
    // A file without pgolf's metadata (the reference's) is matched on names and shapes; for a
    // model the reference cannot build, that does not prove the weights were trained for it.
    if (!naming.reference && info.metadata.count("pgolf.family") == 0)
      log.print(format("warning: %s carries no pgolf metadata and this model is a %s (techniques the reference "
                       "lacks): its tensors were matched on names and shapes only", what.c_str(), naming.family.c_str()));
  };
  if (cmd.kind == Command::import_) {
    load_safetensors(read_file_bytes(cmd.file), cmd.file);
    tr.reset_averages();  // with --ema-decay, eval/export of the checkpoint read its EMA: the imported weights
    const BpbMeter m = tr.validate();
    log.print(format("val_loss:%.8f val_bpb:%.8f tokens:%lld bytes:%lld", m.val_loss(), m.val_bpb(),
                     (long long)m.tokens, (long long)m.bytes));
    // A step-0 checkpoint (fresh optimizer state): eval and export read its weights, and train
    // --resume continues from them.
    if (root) write_file_bytes(target, encode_checkpoint(tr.checkpoint()));
    log.print(format("checkpoint: %s", target.string().c_str()));
    return 0;
  }
  if (cmd.kind == Command::eval) {
    const auto bytes = read_file_bytes(cmd.file);
    PGOLF_CHECK(is_checkpoint(bytes) || cmd.weights == "auto", "--weights ", cmd.weights, " picks among a checkpoint's "
                "weights; ", cmd.file, " is not a checkpoint (an artifact or safetensors file holds one set of weights)");
    if (is_checkpoint(bytes)) {
      tr.load_checkpoint(cmd.file, /*params_only=*/true, cmd.weights);
    } else if (looks_like_safetensors(bytes) || std::filesystem::path(cmd.file).extension() == ".safetensors") {
      load_safetensors(bytes, cmd.file);
    } else {
      std::vector<T> loaded(Model::num_params);
      const ArtifactInfo info =
          decode_artifact(std::span<const std::uint8_t>(bytes), Model::param_table, std::span<T>(loaded), cmd.file);
      Trainer<Model>::Policy::params_from_host(tr.model(), std::span<const T>(loaded));
      tr.use_final_phase();
      log.print(format("artifact:%s codec:%s bytes:%zu payload:%zu", cmd.file.c_str(),
                       std::string(to_string(info.codec)).c_str(), info.file_bytes, info.raw_bytes));
    }
    if (tr.sliding_eval())
      log.print(format("eval_mode:sliding_window stride:%d seq_len:%d", cfg.eval_stride, cfg.eval_window()));
    const BpbMeter m = tr.validate_final();
    log.print(format("val_loss:%.8f val_bpb:%.8f tokens:%lld bytes:%lld", m.val_loss(), m.val_bpb(),
                     (long long)m.tokens, (long long)m.bytes));
    return 0;
  }
  tr.load_checkpoint(cmd.file, /*params_only=*/true, cmd.weights,
                     /*data_position=*/cfg.export_options().uses(Quantiser::gptq));
  if (cmd.format == "safetensors") {
    // Lossless (the model's own scalar), so instead of a round-trip score the file is read back
    // and must give the weights bit for bit.
    const std::vector<T> params = Trainer<Model>::Policy::params_to_host(tr.model());
    const StateDictNaming naming = state_dict_naming<Model>();
    const auto bytes = encode_safetensors(Model::param_table, std::span<const T>(params),
                                          sizeof(T) == 8 ? StDtype::F64 : StDtype::F32, naming, variant.name);
    if (!root) return 0;
    write_file_bytes(target, bytes);
    std::vector<T> back(Model::num_params);
    decode_safetensors(std::span<const std::uint8_t>(read_file_bytes(target)), Model::param_table, std::span<T>(back),
                       target.string(), &naming);
    PGOLF_CHECK(std::memcmp(back.data(), params.data(), params.size() * sizeof(T)) == 0, target.string(),
                " does not read back to the checkpoint's weights");
    log.print(format("safetensors: %s bytes:%zu tensors:%zu dtype:%s naming:%s (%s)", target.string().c_str(),
                     bytes.size(), Model::param_table.size(), sizeof(T) == 8 ? "F64" : "F32",
                     naming.reference ? "reference" : "pgolf", naming.family.c_str()));
    return 0;
  }
  const BpbMeter before = tr.validate();
  log.print(format("checkpoint val_loss:%.4f val_bpb:%.4f", before.val_loss(), before.val_bpb()));
  return export_and_score(
      tr, log, target,
      count_code(variant.name, {variant.source, variant.include_dir, variant.ablation_header}, variant.code_bytes));
}

}  // namespace detail

// Model: the CPU specialisation. GpuModel: the CUDA one (void when the binary has no CUDA backend);
// it provides static bool device_available().
template <class Model, class GpuModel = void>
int main(int argc, char** argv, const Variant& variant) {
  dist::ScopedWorld world;  // outside the try: the handler below still has it
  try {
    Parsed parsed = parse_command_line(argc, argv, variant);
    if (!parsed.command) return parsed.exit_code;
    Command& cmd = *parsed.command;

    if (cmd.kind == Command::submit)
      return submit(variant.name, (long long)Model::num_params, ablation::point(),
                    {variant.source, variant.include_dir, variant.ablation_header},
                    {.run_dir = cmd.file, .out_dir = cmd.output, .name = cmd.name, .author = cmd.author,
                     .github_id = cmd.github_id, .hardware = cmd.hardware, .overwrite = cmd.overwrite});
    if (cmd.kind == Command::verify)
      return verify({.dir = cmd.file, .data_path = cmd.config.data_path, .tokenizer_path = cmd.config.tokenizer_path,
                     .tolerance = cmd.tolerance, .keep_build = cmd.keep_build,
                     .build_dir = cmd.build_dir});
    if (cmd.kind == Command::info) {
      std::printf("%-28s %-12s %-12s %-16s %-7s %s\n", "parameter", "shape", "group", "export", "scope", "elements");
      for (const auto& p : Model::param_table) {
        const std::string shape =
            p.rank == 1 ? std::to_string(p.rows) : std::to_string(p.rows) + "x" + std::to_string(p.cols);
        std::printf("%-28s %-12s %-12s %-16s %-7s %zu\n", p.name.c_str(), shape.c_str(),
                    std::string(to_string(p.group)).c_str(), std::string(to_string(p.export_policy)).c_str(),
                    std::string(to_string(p.scope)).c_str(), p.numel());
      }
      const CodeCount code = count_code(variant.name, {variant.source, variant.include_dir, variant.ablation_header},
                                        variant.code_bytes);
      std::printf("total parameters: %zu\ncode bytes: %lld\n", Model::num_params, code.counted);
      if (code.pack)
        std::printf("code: %s %zu + %s %zu bytes packed; %zu files, %zu bytes as written, %zu stripped; all headers: %lld\n",
                    kPackedCodeFile, code.pack->packed.size(), kBuildScriptFile, code.pack->script.size(),
                    code.pack->files.size() - 1, code.pack->raw_bytes, code.pack->stripped_bytes, variant.code_bytes);
      else
        std::printf("code: %s\n", code.note.c_str());
      if (*ablation::point()) std::printf("ablation: %s\n", ablation::point());
      return 0;
    }

    if constexpr (std::is_void_v<GpuModel>) {
      PGOLF_CHECK(cmd.device != "cuda", variant.name, " was built without the CUDA backend (--device cuda); build it "
                  "with pgolf_add_variant(... CUDA) where nvcc is present");
      cmd.device = "cpu";
    } else {
      const bool have_gpu = GpuModel::device_available();
      PGOLF_CHECK(cmd.device != "cuda" || have_gpu, "--device cuda: no CUDA device found");
      if (cmd.device == "auto") cmd.device = have_gpu ? "cuda" : "cpu";
    }
    if (cmd.device == "cuda" && !cmd.micro_batch_given)
      cmd.config.micro_batch_tokens = std::max<long long>(cmd.config.micro_batch_tokens, 65536);
    cmd.config.validate();
    world.install(dist::from_environment(cmd.device == "cuda"));
    if constexpr (!std::is_void_v<GpuModel>)
      if (cmd.device == "cuda") return detail::run<GpuModel>(variant, cmd);
    return detail::run<Model>(variant, cmd);
  } catch (const std::exception& e) {
    if (world.distributed()) dist::world().fail(e.what());  // ends every rank, this one named
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace pgolf::app
