// `<binary> submit RUN_DIR` and `<binary> verify DIR`: a records-style submission folder and its proof.
//
// submit reads a finished run (train.log, metrics.jsonl, model.pgolf) and writes
//   README.md        model, recipe (the run's config record), results
//   submission.json  the records' fields (name, author, date, val_loss, val_bpb, bytes_total,
//                    bytes_code, ...) plus bytes_model, steps, step time, hardware, eval_device and the
//                    evaluation flags the score needs (eval_flags)
//   train.log        the run's log
//   model.pgolf      the artifact
//   code.shar.xz     the packed code (app/pack_code.hpp) and
//   build.sh         its unpack-and-build script; bytes_code = these two files.
// The score is the artifact round trip of the run's last export record, its digits unchanged.
//
// verify checks that every file is there, that the byte counts in submission.json are the files'
// sizes and total at most 16,000,000, unpacks and builds the code with build.sh in a scratch folder
// (or in --build-dir, where a build of byte-identical packed code is reused),
// scores the artifact with the binary it built (`eval`, with the data named by --data-path and
// --tokenizer-path and the run's eval_flags), and compares that score with submission.json's.
// The packed code builds the CPU backend, which scores in float32; a run scored on a GPU (bf16
// products, submission.json's eval_device) is compared within kCrossDeviceTolerance instead of the
// same-device 1e-8, and verify says so.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "pgolf/app/pack_code.hpp"
#include "pgolf/core/error.hpp"
#include "pgolf/core/file_io.hpp"
#include "pgolf/core/format.hpp"

namespace pgolf::app {

inline constexpr long long kSubmissionCap = 16'000'000;  // artifact + code, decimal bytes

// Where the binary's own sources are (compile definitions from pgolf_add_variant); empty when it
// was built another way.
struct CodeSources {
  std::string source, include_dir, ablation_header;
};

// The code a run counts: the packed code when the sources are on disk, otherwise the configure-time
// upper bound (source + every header) with the reason.
struct CodeCount {
  long long counted = 0;
  std::optional<CodePack> pack;
  std::string note;
};

inline CodeCount count_code(const std::string& variant, const CodeSources& src, long long configure_time_bytes) {
  CodeCount c;
  if (src.source.empty() || src.include_dir.empty()) {
    c.counted = configure_time_bytes;
    c.note = "this binary does not know its sources (not built by pgolf_add_variant): counted source + every header";
    return c;
  }
  try {
    c.pack = pack_code(variant, src.source, src.include_dir, src.ablation_header);
    c.counted = (long long)c.pack->counted_bytes();
  } catch (const std::exception& e) {
    c.counted = configure_time_bytes;
    c.note = std::string(e.what()) + "; counted source + every header at configure time instead";
  }
  return c;
}

namespace detail {

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
  const auto b = read_file_bytes(p);
  try {
    return nlohmann::json::parse(b.begin(), b.end());
  } catch (const nlohmann::json::exception& e) {
    PGOLF_FAIL(p.string(), " is not valid JSON (", e.what(), ")");
  }
}

// The records of metrics.jsonl, one JSON object a line.
inline std::vector<nlohmann::json> read_metrics(const std::filesystem::path& p) {
  std::ifstream in(p);
  PGOLF_CHECK(in.good(), "cannot open ", p.string());
  std::vector<nlohmann::json> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      PGOLF_FAIL(p.string(), " line ", n, " is not JSON (", e.what(), ")");
    }
  }
  return out;
}

inline const nlohmann::json* last_event(const std::vector<nlohmann::json>& recs, const char* event) {
  const nlohmann::json* found = nullptr;
  for (const auto& r : recs)
    if (r.is_object() && r.value("event", "") == event) found = &r;
  return found;
}

template <class T>
T field(const nlohmann::json& rec, const char* key, const std::string& where) {
  PGOLF_CHECK(rec.contains(key) && !rec[key].is_null(), where, " has no field \"", key, "\"");
  try {
    return rec[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    PGOLF_FAIL(where, ": field \"", key, "\" has the wrong type (", rec[key].dump(), ")");
  }
}

inline std::string shell_quote(const std::string& s) { return detail::shell_quote(std::string_view(s)); }

// Runs `command` through /bin/sh; its output (stdout and stderr) and exit status.
inline std::pair<int, std::string> run_captured(const std::string& command) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  PGOLF_CHECK(p != nullptr, "cannot run ", command);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

inline std::string last_lines(const std::string& text, int count) {
  std::size_t p = text.size();
  for (int k = 0; k <= count && p > 0; ++k) {
    p = text.rfind('\n', p - 1);
    if (p == std::string::npos) return text;
  }
  return text.substr(p + 1);
}

// Plain scans of the log and the score line: std::regex costs each variant binary several seconds
// of compile time for three patterns.
// The end of the run of `chars` that starts at b (b itself when there is none).
inline std::size_t run_end(std::string_view text, std::size_t b, std::string_view chars) {
  while (b < text.size() && chars.find(text[b]) != std::string_view::npos) ++b;
  return b;
}
// The first run of `chars` (one or more) right after an occurrence of `key` in `text`, from `from`
// on; `end` gets the position after it.
inline std::optional<std::string> value_after(std::string_view text, std::string_view key, std::string_view chars,
                                              std::size_t from = 0, std::size_t* end = nullptr) {
  for (std::size_t at = text.find(key, from); at != std::string_view::npos; at = text.find(key, at + 1)) {
    const std::size_t b = at + key.size(), e = run_end(text, b, chars);
    if (e == b) continue;
    if (end) *end = e;
    return std::string(text.substr(b, e - b));
  }
  return std::nullopt;
}
// The device a run trained and scored on, from its log's header line (older logs: cpu).
inline std::string logged_device(std::string_view log) {
  return value_after(log, "device:", "abcdefghijklmnopqrstuvwxyz").value_or("cpu");
}

// "val_loss:<x> val_bpb:<y> tokens:", the eval command's score line: {loss, bpb}.
inline std::optional<std::pair<double, double>> parse_score_line(std::string_view text) {
  constexpr std::string_view number = "0123456789.eE+-";
  std::size_t from = 0, loss_end = 0;
  while (auto loss = value_after(text, "val_loss:", number, from, &loss_end)) {
    from = loss_end;
    if (text.substr(loss_end, 9) != " val_bpb:") continue;
    const std::size_t b = loss_end + 9, e = run_end(text, b, number);
    if (e == b || text.substr(e, 8) != " tokens:") continue;
    try {
      return std::pair{std::stod(*loss), std::stod(std::string(text.substr(b, e - b)))};
    } catch (const std::exception&) {
      continue;  // "-" or ".": not a number
    }
  }
  return std::nullopt;
}

inline bool on_path(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((std::filesystem::path(dir) / tool).c_str(), X_OK) == 0) return true;
  return false;
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The flags of `eval` that make the score the run's: the evaluation reads these config fields.
inline nlohmann::json eval_flags(const nlohmann::json& config) {
  nlohmann::json flags = nlohmann::json::array();
  for (const char* key : {"val_tokens", "train_seq_len", "train_batch_tokens", "micro_batch_tokens"}) {
    std::string flag = std::string("--") + key;
    for (char& ch : flag) ch = ch == '_' ? '-' : ch;
    flags.push_back(flag);
    flags.push_back(std::to_string(field<long long>(config, key, "metrics.jsonl's config record")));
  }
  // A run scored by sliding window: the same stride (an older run's config has no such field).
  if (config.contains("eval_stride") && config["eval_stride"].get<long long>() > 0) {
    flags.push_back("--eval-stride");
    flags.push_back(std::to_string(config["eval_stride"].get<long long>()));
    if (config.contains("eval_seq_len") && config["eval_seq_len"].get<long long>() > 0) {
      flags.push_back("--eval-seq-len");
      flags.push_back(std::to_string(config["eval_seq_len"].get<long long>()));
    }
  }
  return flags;
}

inline std::string readme(const nlohmann::json& s, const nlohmann::json& config) {
  std::ostringstream r;
  r << "# " << s["name"].get<std::string>() << "\n\n" << s["blurb"].get<std::string>() << "\n\n";
  r << "## Model\n\n- variant: `" << s["variant"].get<std::string>() << "`, " << s["model_params"].get<long long>()
    << " parameters\n";
  if (!s["ablation"].get<std::string>().empty()) r << "- ablation point: `" << s["ablation"].get<std::string>() << "`\n";
  r << "- artifact: `model.pgolf`, " << s["quant"].get<std::string>() << " + " << s["codec"].get<std::string>() << ", " << s["bytes_model"].get<long long>()
    << " bytes\n\n## Recipe (the run's config record)\n\n| field | value |\n|---|---|\n";
  for (const auto& [k, v] : config.items())
    if (k != "event") r << "| " << k << " | " << (v.is_string() ? v.get<std::string>() : v.dump()) << " |\n";
  r << "\n## Results\n\n| | |\n|---|---|\n";
  for (const char* k : {"val_bpb", "val_loss", "eval_mode", "pre_quant_val_bpb", "pre_quant_val_loss", "steps", "step_avg_ms",
                        "train_time_ms", "hardware", "eval_device", "bytes_model", "bytes_code", "bytes_total"})
    r << "| " << k << " | " << (s[k].is_string() ? s[k].get<std::string>() : s[k].dump()) << " |\n";
  r << "\nval_bpb is the artifact's round-trip score, evaluation " << s["eval_mode"].get<std::string>()
    << " (train.log's final_*_roundtrip_exact or final_*_sliding_window_exact line). bytes_code counts `" << kPackedCodeFile << "` + `" << kBuildScriptFile
    << "`: the variant's source and the library headers it includes (" << s["code_files"].get<long long>()
    << " files, " << s["code_closure_raw_bytes"].get<long long>() << " bytes as written, "
    << s["code_closure_stripped_bytes"].get<long long>()
    << " without comments and blank lines), LZMA-packed.\n\n## Reproduce\n\n```\nsh build.sh DIR         # unpack and build "
       "DIR/build/"
    << s["variant"].get<std::string>() << "\nDIR/build/" << s["variant"].get<std::string>() << " eval model.pgolf";
  for (const auto& f : s["eval_flags"]) r << " " << f.get<std::string>();
  r << " --data-path ... --tokenizer-path ...\n```\n\nor `" << s["variant"].get<std::string>()
    << " verify .`, which does all of that and checks the bytes and the score.\n";
  return r.str();
}

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  write_file_bytes(p, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

inline const char* const kSubmissionFiles[] = {"README.md", "submission.json", "train.log", "model.pgolf",
                                               kPackedCodeFile, kBuildScriptFile};

}  // namespace detail

struct SubmitOptions {
  std::string run_dir, out_dir, name, author, github_id, hardware;
  bool overwrite = false;
};

inline int submit(const std::string& variant, long long model_params, const char* ablation, const CodeSources& src,
                  const SubmitOptions& o) {
  namespace fs = std::filesystem;
  using detail::field;
  const fs::path run = o.run_dir;
  PGOLF_CHECK(fs::is_directory(run), "run folder ", run.string(), " does not exist");
  for (const char* f : {"train.log", "metrics.jsonl", "model.pgolf"})
    PGOLF_CHECK(fs::is_regular_file(run / f), "the run folder ", run.string(), " has no ", f,
                f == std::string("model.pgolf") ? " (did the run finish its export?)" : "");
  const auto recs = detail::read_metrics(run / "metrics.jsonl");
  const std::string m = (run / "metrics.jsonl").string();
  const nlohmann::json* config = detail::last_event(recs, "config");
  const nlohmann::json* var = detail::last_event(recs, "variant");
  const nlohmann::json* exp = detail::last_event(recs, "export");
  const nlohmann::json* val = detail::last_event(recs, "val");
  PGOLF_CHECK(config, m, " has no config record");
  PGOLF_CHECK(var, m, " has no variant record");
  PGOLF_CHECK(exp, m, " has no export record (the run did not finish)");
  PGOLF_CHECK(val, m, " has no val record");
  const std::string run_variant = field<std::string>(*var, "variant", m + "'s variant record");
  PGOLF_CHECK(run_variant == variant, "the run in ", run.string(), " was trained by ", run_variant, ", this binary is ",
              variant, ": run `", run_variant, " submit` (the packed code is the submitting binary's)");
  PGOLF_CHECK(field<long long>(*var, "model_params", m) == model_params, "the run's model has ",
              field<long long>(*var, "model_params", m), " parameters, this binary's ", model_params);
  const long long model_bytes = (long long)fs::file_size(run / "model.pgolf");
  PGOLF_CHECK(field<long long>(*exp, "model_bytes", m) == model_bytes, (run / "model.pgolf").string(), " is ",
              model_bytes, " bytes but the run's export record says ", field<long long>(*exp, "model_bytes", m),
              ": the artifact was replaced after training, so the logged score is not its score");

  const fs::path out = o.out_dir.empty() ? run / "submission" : fs::path(o.out_dir);
  std::error_code ec;
  if (fs::exists(out, ec)) {
    PGOLF_CHECK(fs::is_directory(out, ec), "-o ", out.string(), " exists and is not a directory");
    PGOLF_CHECK(o.overwrite || fs::is_empty(out, ec), "the submission folder ", out.string(),
                " is not empty; refusing to overwrite it (choose another -o, or pass --overwrite)");
  }
  PGOLF_CHECK(src.source.size() && src.include_dir.size(), "this binary does not know its sources (it was not built by "
              "pgolf_add_variant, which passes PGOLF_VARIANT_SOURCE and PGOLF_INCLUDE_DIR): cannot pack its code");
  const CodePack pack = pack_code(variant, src.source, src.include_dir, src.ablation_header);

  const std::string codec = field<std::string>(*exp, "codec", m);
  const std::string quant = exp->value("quant", std::string("int8"));  // absent: the reference's int8 export
  const long long steps = field<long long>(*val, "step", m);
  const double train_ms = field<double>(*val, "train_time_ms", m);
  std::string device = "cpu", world = "1";
  {
    const auto log = read_file_bytes(run / "train.log");
    const std::string text(log.begin(), log.end());
    device = detail::logged_device(text);
    if (auto w = detail::value_after(text, "world_size:", "0123456789")) world = *w;
  }
  nlohmann::json s;
  s["name"] = o.name.empty() ? variant + " " + field<std::string>(*config, "run_id", m) : o.name;
  s["author"] = o.author;
  s["github_id"] = o.github_id;
  s["blurb"] = format("%s (%lld parameters%s%s) trained %lld steps on %s; the score is the final %s+%s round trip of "
                      "the artifact under the 16,000,000-byte cap, code counted as LZMA-packed source and included "
                      "library headers.",
                      variant.c_str(), model_params, *ablation ? ", ablation " : "", ablation, steps,
                      (o.hardware.empty() ? device + " x" + world : o.hardware).c_str(), quant.c_str(), codec.c_str());
  s["date"] = detail::utc_now();
  // The score: the artifact's round trip, by sliding window when the run evaluated so (as the records
  // report it), else the standard evaluation; both are kept.
  const bool sliding = exp->contains("roundtrip_sliding_val_bpb");
  s["val_loss"] = field<double>(*exp, sliding ? "roundtrip_sliding_val_loss" : "roundtrip_val_loss", m);
  s["val_bpb"] = field<double>(*exp, sliding ? "roundtrip_sliding_val_bpb" : "roundtrip_val_bpb", m);
  s["roundtrip_val_loss"] = field<double>(*exp, "roundtrip_val_loss", m);
  s["roundtrip_val_bpb"] = field<double>(*exp, "roundtrip_val_bpb", m);
  s["eval_mode"] = !sliding ? std::string("standard")
                  : exp->contains("eval_seq_len")  // older runs logged no window: it was train_seq_len
                      ? format("sliding_window stride:%lld seq_len:%lld", field<long long>(*exp, "eval_stride", m),
                               field<long long>(*exp, "eval_seq_len", m))
                      : format("sliding_window stride:%lld", field<long long>(*exp, "eval_stride", m));
  s["pre_quant_val_loss"] = field<double>(*val, "val_loss", m);
  s["pre_quant_val_bpb"] = field<double>(*val, "val_bpb", m);
  s["bytes_model"] = model_bytes;
  s["bytes_code"] = (long long)pack.counted_bytes();
  s["bytes_total"] = model_bytes + (long long)pack.counted_bytes();
  s["code_files"] = (long long)pack.files.size() - 1;  // the generated CMakeLists.txt is not a source file
  s["code_closure_raw_bytes"] = (long long)pack.raw_bytes;
  s["code_closure_stripped_bytes"] = (long long)pack.stripped_bytes;
  s["steps"] = steps;
  s["train_time_ms"] = train_ms;
  s["step_avg_ms"] = steps > 0 ? train_ms / double(steps) : 0.0;
  s["hardware"] = o.hardware.empty() ? device + " x" + world : o.hardware;
  s["eval_device"] = device;  // what scored the artifact: verify's tolerance depends on it
  s["variant"] = variant;
  s["model_params"] = model_params;
  s["ablation"] = ablation;
  s["codec"] = codec;
  s["quant"] = quant;
  s["run_id"] = field<std::string>(*config, "run_id", m);
  s["seed"] = (*config).value("seed", nlohmann::json());
  s["eval_flags"] = detail::eval_flags(*config);
  PGOLF_CHECK(s["bytes_total"].get<long long>() <= kSubmissionCap, "the submission is ", s["bytes_total"].get<long long>(),
              " bytes (artifact ", model_bytes, " + code ", pack.counted_bytes(), "), over the cap of ", kSubmissionCap);

  fs::create_directories(out);
  write_file_bytes(out / kPackedCodeFile, pack.packed);
  detail::write_text(out / kBuildScriptFile, pack.script);
  fs::permissions(out / kBuildScriptFile, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add);
  write_file_bytes(out / "model.pgolf", read_file_bytes(run / "model.pgolf"));
  write_file_bytes(out / "train.log", read_file_bytes(run / "train.log"));
  detail::write_text(out / "submission.json", s.dump(2) + "\n");
  detail::write_text(out / "README.md", detail::readme(s, *config));
  std::printf("submission: %s\n  val_bpb:%s val_loss:%s\n  bytes_total:%lld = model %lld + code %zu (%s %zu + %s %zu; "
              "%lld files, %zu bytes raw, %zu stripped)\n",
              out.string().c_str(), s["val_bpb"].dump().c_str(), s["val_loss"].dump().c_str(),
              s["bytes_total"].get<long long>(), model_bytes, pack.counted_bytes(), kPackedCodeFile, pack.packed.size(),
              kBuildScriptFile, pack.script.size(), s["code_files"].get<long long>(), pack.raw_bytes, pack.stripped_bytes);
  return 0;
}

// |val_bpb| and |val_loss| differences verify accepts: the same device's evaluation repeats to the
// last digit; a GPU's bf16 products against the CPU's float32 moved the score by 2e-4 to 5e-4 where
// measured (the README's H100 run; a 300-step pgolf-tiny's artifact under the CUDA emulation: val_loss
// 4.31146 against 4.31093, val_bpb 2.52235 against 2.52204), so 2e-3 leaves room and still refuses
// another artifact.
inline constexpr double kSameDeviceTolerance = 1e-8, kCrossDeviceTolerance = 2e-3;

struct VerifyOptions {
  std::string dir, data_path, tokenizer_path;
  std::optional<double> tolerance;  // unset: by the device that scored the run (above)
  bool keep_build = false;
  std::string build_dir;  // empty: a scratch folder
};

// Marks a --build-dir as verify's own, so verify never empties a folder it did not make.
inline constexpr const char* kVerifyBuildMarker = ".pgolf-verify-build";

// Exit 0 when everything holds, 1 with every failed check named.
inline int verify(const VerifyOptions& o) {
  namespace fs = std::filesystem;
  using detail::field;
  const fs::path dir = o.dir;
  PGOLF_CHECK(fs::is_directory(dir), "submission folder ", dir.string(), " does not exist");
  std::vector<std::string> failed;
  auto fail = [&](std::string what) {
    std::printf("FAIL %s\n", what.c_str());
    failed.push_back(std::move(what));
  };
  auto ok = [](const std::string& what) { std::printf("ok   %s\n", what.c_str()); };
  std::vector<std::string> missing;
  for (const char* f : detail::kSubmissionFiles)
    if (!fs::is_regular_file(dir / f)) missing.push_back(f);
  if (!missing.empty()) {
    std::string names;
    for (const auto& f : missing) names += (names.empty() ? "" : ", ") + f;
    fail("missing file(s) in " + dir.string() + ": " + names);
    return 1;  // nothing else can be checked honestly
  }
  ok("every file present (" + std::to_string(std::size(detail::kSubmissionFiles)) + ")");
  const nlohmann::json s = detail::read_json_file(dir / "submission.json");
  const std::string where = (dir / "submission.json").string();
  const long long model = (long long)fs::file_size(dir / "model.pgolf");
  const long long code = (long long)(fs::file_size(dir / kPackedCodeFile) + fs::file_size(dir / kBuildScriptFile));
  const long long bm = field<long long>(s, "bytes_model", where), bc = field<long long>(s, "bytes_code", where),
                  bt = field<long long>(s, "bytes_total", where);
  if (bm == model && bc == code && bt == model + code)
    ok(format("bytes: model %lld + code %lld = %lld, as submission.json says", model, code, model + code));
  else
    fail(format("bytes: the files are model.pgolf %lld + code %lld = %lld, submission.json says bytes_model %lld, "
                "bytes_code %lld, bytes_total %lld", model, code, model + code, bm, bc, bt));
  if (model + code <= kSubmissionCap)
    ok(format("total %lld <= %lld", model + code, kSubmissionCap));
  else
    fail(format("total %lld bytes is over the cap of %lld", model + code, kSubmissionCap));

  const std::string variant = field<std::string>(s, "variant", where);
  const double want_bpb = field<double>(s, "val_bpb", where), want_loss = field<double>(s, "val_loss", where);
  // What scored the artifact: the run's device, by its log (as submit read it); submission.json's
  // eval_device, where present (folders since it was recorded), must say the same.
  const auto log = read_file_bytes(dir / "train.log");
  const std::string scored_on = detail::logged_device(std::string_view(reinterpret_cast<const char*>(log.data()), log.size()));
  const std::string said = s.contains("eval_device") ? field<std::string>(s, "eval_device", where) : scored_on;
  if (said != scored_on)
    fail("submission.json's eval_device '" + said + "' is not train.log's device '" + scored_on + "'");
  const bool cross_device = scored_on != "cpu";
  const double tolerance = o.tolerance.value_or(cross_device ? kCrossDeviceTolerance : kSameDeviceTolerance);
  std::vector<std::string> flags;
  for (const auto& f : field<nlohmann::json>(s, "eval_flags", where)) flags.push_back(f.get<std::string>());

  try {
    (void)xz_decode(read_file_bytes(dir / kPackedCodeFile), (dir / kPackedCodeFile).string());
    ok(std::string(kPackedCodeFile) + " decodes (its CRC32 holds)");
  } catch (const std::exception& e) {
    fail(std::string("packed code: ") + e.what());
    return 1;
  }
  std::vector<std::string> absent;
  for (const char* tool : {"sh", "xz", "cmake", "c++"})
    if (!detail::on_path(tool)) absent.push_back(tool);
  if (!absent.empty()) {
    std::string names;
    for (const auto& t : absent) names += (names.empty() ? "" : ", ") + t;
    fail("cannot build the packed code: not on PATH: " + names + " (build.sh needs sh, xz, cmake and a C++ compiler)");
    return 1;
  }
  PGOLF_CHECK(!o.data_path.empty() && !o.tokenizer_path.empty(),
              "verify needs --data-path and --tokenizer-path (this binary has no bundled data)");

  // Where the code is built: a scratch folder of our own, removed on every way out; or --build-dir,
  // kept, and reused as it is when it holds a finished build of a byte-identical code.shar.xz and
  // build.sh (several seeds of one submission build once). Its copies of the two files are written
  // after a successful build only, so a failed or interrupted build is never reused.
  const fs::path stamp = "built-from";
  const auto packed = read_file_bytes(dir / kPackedCodeFile), script = read_file_bytes(dir / kBuildScriptFile);
  fs::path work;
  bool reuse = false;
  if (!o.build_dir.empty()) {
    work = fs::absolute(o.build_dir);
    if (fs::exists(work)) {
      PGOLF_CHECK(fs::is_directory(work), "--build-dir ", work.string(), " exists and is not a folder");
      const bool ours = fs::is_regular_file(work / kVerifyBuildMarker);
      PGOLF_CHECK(ours || fs::is_empty(work), "--build-dir ", work.string(), " is not empty and is not a verify build "
                  "folder (no ", kVerifyBuildMarker, "): refusing to replace what it holds");
      reuse = ours && fs::is_regular_file(work / "code" / "build" / variant) &&
              fs::is_regular_file(work / stamp / kPackedCodeFile) && fs::is_regular_file(work / stamp / kBuildScriptFile) &&
              read_file_bytes(work / stamp / kPackedCodeFile) == packed &&
              read_file_bytes(work / stamp / kBuildScriptFile) == script;
    }
  } else {
    std::random_device rd;
    for (int k = 0; k < 100 && work.empty(); ++k) {
      const fs::path c = fs::temp_directory_path() / format("pgolf-verify-%d-%08x", int(::getpid()), unsigned(rd()));
      if (fs::create_directory(c)) work = c;
    }
    PGOLF_CHECK(!work.empty(), "cannot make a scratch folder in ", fs::temp_directory_path().string());
  }
  struct Cleanup {
    fs::path p;
    bool keep;
    ~Cleanup() {
      std::error_code ec;
      if (keep) std::printf("build folder kept: %s\n", p.string().c_str());
      else fs::remove_all(p, ec);
    }
  } cleanup{work, o.keep_build || !o.build_dir.empty()};

  const fs::path code_dir = work / "code";
  const fs::path bin = code_dir / "build" / variant;
  if (reuse) {
    ok("the packed code unpacked and built " + variant + " earlier in " + work.string() + " (its " + kPackedCodeFile +
       " and " + kBuildScriptFile + " byte for byte): reused");
  } else {
    std::error_code ec;
    fs::remove_all(code_dir, ec);
    fs::remove_all(work / stamp, ec);
    fs::create_directories(work);
    detail::write_text(work / kVerifyBuildMarker, "pgolf verify build folder; its code/ and built-from/ are replaced at will\n");
    std::printf("building the packed code in %s (sh build.sh) ...\n", code_dir.string().c_str());
    std::fflush(stdout);
    const auto [build_rc, build_out] = detail::run_captured(
        "sh " + detail::shell_quote(fs::absolute(dir / kBuildScriptFile).string()) + " " + detail::shell_quote(code_dir.string()));
    if (build_rc != 0 || !fs::is_regular_file(bin)) {
      fail(format("the packed code did not unpack and build (build.sh exit %d); its last lines:\n%s", build_rc,
                  detail::last_lines(build_out, 15).c_str()));
      return 1;
    }
    fs::create_directories(work / stamp);
    write_file_bytes(work / stamp / kPackedCodeFile, packed);
    write_file_bytes(work / stamp / kBuildScriptFile, script);
    ok("the packed code unpacked and built " + variant);
  }

  std::string cmd = detail::shell_quote(bin.string()) + " eval " + detail::shell_quote(fs::absolute(dir / "model.pgolf").string()) +
                    " --data-path " + detail::shell_quote(o.data_path) + " --tokenizer-path " + detail::shell_quote(o.tokenizer_path);
  for (const auto& f : flags) cmd += " " + detail::shell_quote(f);
  std::printf("scoring: %s\n", cmd.c_str());
  std::fflush(stdout);
  const auto [eval_rc, eval_out] = detail::run_captured(cmd);
  const auto score = detail::parse_score_line(eval_out);
  if (eval_rc != 0 || !score) {
    fail(format("the built binary could not score the artifact model.pgolf (exit %d):\n%s", eval_rc,
                detail::last_lines(eval_out, 10).c_str()));
    return 1;
  }
  const auto [got_loss, got_bpb] = *score;
  const std::string scores = format("val_bpb %.8f (submission.json %.17g, |diff| %.3g), val_loss %.8f (submission.json "
                                    "%.17g, |diff| %.3g), tolerance %g%s",
                                    got_bpb, want_bpb, std::abs(got_bpb - want_bpb), got_loss, want_loss,
                                    std::abs(got_loss - want_loss), tolerance,
                                    cross_device ? (" (the run scored on " + scored_on + ", the built binary on the CPU)").c_str() : "");
  if (std::abs(got_bpb - want_bpb) <= tolerance && std::abs(got_loss - want_loss) <= tolerance)
    ok("score of the artifact by the built binary: " + scores);
  else
    fail("the artifact's score is not submission.json's (altered artifact, code or data?): " + scores);

  if (failed.empty()) {
    std::printf("verified: %s, %s val_bpb %.8f, %lld bytes (model %lld + code %lld) <= %lld\n", dir.string().c_str(),
                variant.c_str(), got_bpb, model + code, model, code, kSubmissionCap);
    return 0;
  }
  std::printf("verify failed: %zu check(s)\n", failed.size());
  return 1;
}

}  // namespace pgolf::app
