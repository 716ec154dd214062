// pgolf-race's pure parts: the manifest and command-line inputs, the records a run leaves
// (metrics.jsonl, `info`, the race's own completion record), the resume decision, the statistics,
// the results table and JSON, and a small SVG line-plot writer. No processes and no files here, so
// tests/race/test_race.cpp checks all of it directly; tools/race.cpp does the running.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgolf::race {

using json = nlohmann::json;

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Inputs

struct Variant {
  std::string name;    // run folders and table rows
  std::string binary;  // path of the variant binary
  std::vector<std::pair<std::string, std::string>> overrides;  // field -> C++ expression, grid order
};

struct Manifest {
  std::string name;
  std::string source_dir;  // the configured source tree (for the git commit); may be empty
  std::vector<Variant> variants;
};

inline std::string overrides_text(const Variant& v) {
  std::string s;
  for (const auto& [f, x] : v.overrides) s += (s.empty() ? "" : " ") + f + "=" + x;
  return s;
}

// The manifest pgolf_add_ablation writes (<build>/<name>.ablation.json). `origin` names the file
// in messages.
inline Manifest parse_manifest(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error("manifest " + origin + " is not valid JSON: " + e.what());
  }
  const auto need = [&](const json& obj, const char* key, const std::string& where) -> const json& {
    if (!obj.is_object() || !obj.contains(key)) throw Error("manifest " + origin + ": " + where + " has no \"" + key + "\"");
    return obj.at(key);
  };
  const auto string_of = [&](const json& v, const std::string& what) {
    if (!v.is_string()) throw Error("manifest " + origin + ": " + what + " must be a string");
    return v.get<std::string>();
  };
  Manifest m;
  m.name = string_of(need(j, "name", "the top level"), "name");
  if (j.contains("source_dir")) m.source_dir = string_of(j.at("source_dir"), "source_dir");
  const json& points = need(j, "points", "the top level");
  if (!points.is_array()) throw Error("manifest " + origin + ": \"points\" must be a list");
  if (points.empty()) throw Error("manifest " + origin + ": \"points\" is empty");
  for (std::size_t i = 0; i < points.size(); ++i) {
    const std::string where = "points[" + std::to_string(i) + "]";
    Variant v;
    v.name = string_of(need(points[i], "name", where), where + ".name");
    v.binary = string_of(need(points[i], "binary", where), where + ".binary");
    if (points[i].contains("overrides")) {
      const json& o = points[i].at("overrides");
      if (!o.is_object()) throw Error("manifest " + origin + ": " + where + ".overrides must be an object");
      for (const auto& [k, x] : o.items()) v.overrides.emplace_back(k, string_of(x, where + ".overrides." + k));
    }
    m.variants.push_back(std::move(v));
  }
  return m;
}

// A binary named on the command line: its file name is the variant's name.
inline Variant variant_from_binary(const std::string& path) {
  std::string name = path;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  if (const auto slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") throw Error("'" + path + "' does not name a binary");
  return {name, path, {}};
}

inline void check_unique_names(const std::vector<Variant>& vs) {
  if (vs.empty()) throw Error("no variants: give --manifest FILE or variant binaries");
  for (std::size_t i = 0; i < vs.size(); ++i)
    for (std::size_t k = 0; k < i; ++k)
      if (vs[i].name == vs[k].name)
        throw Error("two variants are named '" + vs[i].name + "' (" + vs[k].binary + " and " + vs[i].binary +
                    "): their runs would share a folder");
}

// "1337,1338,1339" -> {1337, 1338, 1339}.
inline std::vector<std::uint64_t> parse_seeds(const std::string& text) {
  std::vector<std::uint64_t> seeds;
  if (text.find_first_not_of(" \t") == std::string::npos)
    throw Error("--seeds: no seeds given (write e.g. --seeds 1337,1338,1339)");
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) throw Error("--seeds '" + text + "': an empty entry");
    item = item.substr(b, e - b + 1);
    if (item.find_first_not_of("0123456789") != std::string::npos || item.size() > 19)
      throw Error("--seeds '" + text + "': '" + item + "' is not a non-negative integer");
    const std::uint64_t s = std::stoull(item);
    if (std::find(seeds.begin(), seeds.end(), s) != seeds.end())
      throw Error("--seeds '" + text + "': seed " + item + " is listed twice");
    seeds.push_back(s);
  }
  if (seeds.empty()) throw Error("--seeds: no seeds given (write e.g. --seeds 1337,1338,1339)");
  return seeds;
}

// The race sets these for every run itself; passing them after -- would make runs collide.
inline void check_train_flags(const std::vector<std::string>& flags) {
  for (const std::string& f : flags) {
    for (const char* own : {"--seed", "--out-dir", "--run-id", "--resume", "--overwrite"}) {
      const std::string o = own;
      if (f == o || f.rfind(o + "=", 0) == 0)
        throw Error("train flag " + f + " after --: pgolf-race sets " + o +
                    (o == "--seed" ? " from --seeds" : o == "--resume" ? " never (it resumes by skipping finished runs)"
                                                                      : " itself for every run"));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What a run leaves

struct ValPoint {
  long long step = 0;
  double val_loss = 0, val_bpb = 0, train_time_ms = 0;
};

struct RunMetrics {
  std::optional<long long> model_params;   // the "variant" record
  std::vector<ValPoint> val;               // every "val" record, in order
  std::optional<long long> model_bytes;    // the "export" record
  std::optional<long long> total_bytes;
  std::optional<double> roundtrip_val_bpb;
  bool exported() const { return roundtrip_val_bpb.has_value() && model_bytes.has_value(); }
  bool complete() const { return exported() && !val.empty(); }
  double final_val_bpb() const { return val.empty() ? NAN : val.back().val_bpb; }
  double step_ms() const {
    return val.empty() || val.back().step <= 0 ? NAN : val.back().train_time_ms / double(val.back().step);
  }
};

// metrics.jsonl (app/main.hpp, train/trainer.hpp). A run killed mid-line leaves a torn last line:
// lines that do not parse are skipped, and the run then lacks its export record anyway.
inline RunMetrics parse_metrics(const std::string& jsonl) {
  RunMetrics m;
  std::stringstream in(jsonl);
  std::string line;
  const auto num = [](const json& j, const char* k) { return j.contains(k) && j.at(k).is_number(); };
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("event") || !j.at("event").is_string()) continue;
    const std::string ev = j.at("event").get<std::string>();
    if (ev == "variant" && num(j, "model_params")) {
      m.model_params = j.at("model_params").get<long long>();
    } else if (ev == "val" && num(j, "step") && num(j, "val_bpb")) {
      m.val.push_back({j.at("step").get<long long>(), num(j, "val_loss") ? j.at("val_loss").get<double>() : NAN,
                       j.at("val_bpb").get<double>(), num(j, "train_time_ms") ? j.at("train_time_ms").get<double>() : NAN});
    } else if (ev == "export" && num(j, "roundtrip_val_bpb") && num(j, "model_bytes")) {
      m.model_bytes = j.at("model_bytes").get<long long>();
      if (num(j, "total_bytes")) m.total_bytes = j.at("total_bytes").get<long long>();
      m.roundtrip_val_bpb = j.at("roundtrip_val_bpb").get<double>();
    }
  }
  return m;
}

// A grid point's `info` prints "ablation: f1=v1 f2=v2" (app/ablation.hpp): its overrides, in grid order,
// for a binary raced without its manifest. Values with spaces are not split apart: a token without '='
// continues the previous value.
inline std::vector<std::pair<std::string, std::string>> parse_info_overrides(const std::string& out) {
  std::vector<std::pair<std::string, std::string>> o;
  const std::string key = "ablation: ";
  const auto at = out.find(key);
  if (at == std::string::npos) return o;
  const auto end = out.find('\n', at);
  std::istringstream line(out.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size()));
  std::string tok;
  while (line >> tok) {
    const auto eq = tok.find('=');
    if (eq != std::string::npos && eq > 0) o.emplace_back(tok.substr(0, eq), tok.substr(eq + 1));
    else if (!o.empty()) o.back().second += " " + tok;
  }
  return o;
}

// `<variant> info` prints "total parameters: N".
inline std::optional<long long> parse_info_params(const std::string& out) {
  const std::string key = "total parameters: ";
  const auto at = out.find(key);
  if (at == std::string::npos) return std::nullopt;
  std::size_t used = 0;
  try {
    const long long n = std::stoll(out.substr(at + key.size()), &used);
    return used > 0 && n >= 0 ? std::optional<long long>(n) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The last non-blank line of a stream (a failed run's message).
inline std::string last_line(const std::string& text) {
  std::size_t end = text.size();
  while (end > 0) {
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ')) --end;
    if (end == 0) break;
    const auto start = text.rfind('\n', end == 0 ? 0 : end - 1);
    const std::size_t b = start == std::string::npos ? 0 : start + 1;
    std::string line = text.substr(b, end - b);
    if (line.find_first_not_of(" \t") != std::string::npos) return line.size() > 300 ? line.substr(0, 300) + "..." : line;
    end = b;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Resume: each finished run gets a completion record, race.json in its folder, naming the exact
// command and binary it ran. A later race skips a run only when that record says it succeeded
// with the same command and binary and its metrics are complete; anything else in the folder is
// a partial, failed or stale run, which is moved aside and run again.

struct RunRecord {
  bool ok = false;
  std::string error;                 // when !ok
  std::vector<std::string> command;  // argv of the run
  std::string binary_stamp;          // size and mtime of the binary when it ran
  double wall_s = 0;
};

inline json to_json(const RunRecord& r) {
  return {{"status", r.ok ? "ok" : "failed"}, {"error", r.error}, {"command", r.command},
          {"binary_stamp", r.binary_stamp}, {"wall_s", r.wall_s}};
}

inline std::optional<RunRecord> parse_record(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("status") || !j.contains("command") || !j.at("command").is_array()) return std::nullopt;
  RunRecord r;
  try {
    r.ok = j.at("status") == "ok";
    r.error = j.value("error", "");
    r.command = j.at("command").get<std::vector<std::string>>();
    r.binary_stamp = j.value("binary_stamp", "");
    r.wall_s = j.value("wall_s", 0.0);
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return r;
}

struct RunDirState {
  bool exists = false;
  bool empty = true;
  std::optional<std::string> record;  // race.json's text, if present
  bool metrics_complete = false;      // metrics.jsonl has its val and export records
};

enum class Action { run, skip, redo };

struct Decision {
  Action action;
  std::string reason;
};

inline Decision decide_resume(const RunDirState& s, const std::vector<std::string>& command, const std::string& stamp) {
  if (!s.exists || s.empty) return {Action::run, "new"};
  if (!s.record) return {Action::redo, "partial (no completion record: interrupted?)"};
  const auto r = parse_record(*s.record);
  if (!r) return {Action::redo, "unreadable completion record"};
  if (!r->ok) return {Action::redo, "failed before (" + r->error + ")"};
  if (r->command != command) return {Action::redo, "the recipe changed (different command)"};
  if (r->binary_stamp != stamp) return {Action::redo, "the binary changed since"};
  if (!s.metrics_complete) return {Action::redo, "its metrics.jsonl is incomplete"};
  return {Action::skip, "complete"};
}

// ---------------------------------------------------------------------------------------------
// Statistics

inline double mean(const std::vector<double>& x) {
  if (x.empty()) return NAN;
  double s = 0;
  for (double v : x) s += v;
  return s / double(x.size());
}

// Sample standard deviation (n - 1); undefined for fewer than two values.
inline double sample_std(const std::vector<double>& x) {
  if (x.size() < 2) return NAN;
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / double(x.size() - 1));
}

// The mean of several curves, point by point over the points all of them have (same recipe, so
// the same validation steps), x and y both averaged.
inline std::vector<std::pair<double, double>> mean_curve(const std::vector<std::vector<std::pair<double, double>>>& curves) {
  std::vector<std::pair<double, double>> out;
  if (curves.empty()) return out;
  std::size_t n = curves[0].size();
  for (const auto& c : curves) n = std::min(n, c.size());
  for (std::size_t i = 0; i < n; ++i) {
    double x = 0, y = 0;
    for (const auto& c : curves) x += c[i].first, y += c[i].second;
    out.emplace_back(x / double(curves.size()), y / double(curves.size()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Results

struct RunResult {
  std::uint64_t seed = 0;
  bool ok = false;
  bool reused = false;  // skipped by resume: results from an earlier race
  std::string error;
  RunMetrics metrics;
  double wall_s = 0;
  std::string dir;  // relative to the results folder
};

struct VariantResult {
  Variant variant;
  std::optional<long long> params;
  std::string error;  // the variant could not run at all (binary missing, `info` failed)
  std::vector<RunResult> runs;

  std::vector<double> ok_values(double (*f)(const RunResult&)) const {
    std::vector<double> v;
    for (const auto& r : runs)
      if (r.ok && std::isfinite(f(r))) v.push_back(f(r));
    return v;
  }
  std::vector<double> val_bpbs() const { return ok_values([](const RunResult& r) { return r.metrics.final_val_bpb(); }); }
  std::vector<double> roundtrips() const {
    return ok_values([](const RunResult& r) { return r.metrics.roundtrip_val_bpb.value_or(NAN); });
  }
  std::vector<double> step_ms() const { return ok_values([](const RunResult& r) { return r.metrics.step_ms(); }); }
  std::optional<long long> artifact_bytes() const {  // the largest over seeds: what a size cap sees
    std::optional<long long> b;
    for (const auto& r : runs)
      if (r.ok && r.metrics.model_bytes) b = std::max(b.value_or(0), *r.metrics.model_bytes);
    return b;
  }
};

struct RaceInfo {
  std::string label, command, date, host, commit;
  unsigned cores = 0;
  int jobs = 1;
  std::vector<std::uint64_t> seeds;
  std::vector<std::string> train_flags;
};

inline std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

inline std::string md_cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out.empty() ? "-" : out;
}

inline std::string run_error_line(const VariantResult& v, const RunResult& r) {
  return "- " + v.variant.name + " seed " + std::to_string(r.seed) + ": " + r.error + " (" + r.dir + ")";
}

inline std::string results_markdown(const RaceInfo& info, const std::vector<VariantResult>& vs) {
  std::string s = "# " + info.label + "\n\n";
  s += "`" + info.command + "`\n\n";
  s += info.date + " on " + info.host + " (" + std::to_string(info.cores) + " cores, " + std::to_string(info.jobs) +
       " run" + (info.jobs == 1 ? "" : "s") + " at a time), commit " + (info.commit.empty() ? "unknown" : info.commit) +
       ".\nval_bpb is each run's last validation; artifact bytes the largest over seeds; step time the training "
       "time per step; std the sample standard deviation over seeds.\n\n";
  s += "| variant | overrides | parameters | artifact bytes | step ms |";
  std::string rule = "| --- | --- | ---: | ---: | ---: |";
  for (auto seed : info.seeds) s += " val_bpb seed " + std::to_string(seed) + " |", rule += " ---: |";
  s += " val_bpb mean | val_bpb std | round-trip val_bpb mean | status |\n";
  s += rule + " ---: | ---: | ---: | --- |\n";
  std::vector<std::string> failures;
  for (const auto& v : vs) {
    s += "| " + md_cell(v.variant.name) + " | " + md_cell(overrides_text(v.variant)) + " | " +
         (v.params ? std::to_string(*v.params) : "-") + " | ";
    const auto bytes = v.artifact_bytes();
    s += (bytes ? std::to_string(*bytes) : "-") + " | " + fixed(mean(v.step_ms()), 1) + " |";
    int failed = 0;
    for (auto seed : info.seeds) {
      const auto it = std::find_if(v.runs.begin(), v.runs.end(), [&](const RunResult& r) { return r.seed == seed; });
      if (it == v.runs.end()) s += " - |";
      else if (!it->ok) s += " failed |", ++failed, failures.push_back(run_error_line(v, *it));
      else s += " " + fixed(it->metrics.final_val_bpb(), 4) + " |";
    }
    const auto bpb = v.val_bpbs();
    s += " " + fixed(mean(bpb), 4) + " | " + fixed(sample_std(bpb), 4) + " | " + fixed(mean(v.roundtrips()), 4) + " | ";
    if (!v.error.empty()) s += "error: " + md_cell(v.error);
    else if (failed > 0) s += std::to_string(failed) + " of " + std::to_string(info.seeds.size()) + " runs failed";
    else s += "ok";
    s += " |\n";
  }
  std::vector<std::string> broken;
  for (const auto& v : vs)
    if (!v.error.empty()) broken.push_back("- " + v.variant.name + " (" + v.variant.binary + "): " + v.error);
  if (!broken.empty() || !failures.empty()) {
    s += "\n## Failed\n\n";
    for (const auto& l : broken) s += l + "\n";
    for (const auto& l : failures) s += l + "\n";
  }
  s += "\nPlots: [val_bpb against step](val_bpb_by_step.svg), [val_bpb against wall time](val_bpb_by_time.svg).\n";
  return s;
}

inline json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

inline json results_json(const RaceInfo& info, const std::vector<VariantResult>& vs) {
  json j = {{"label", info.label}, {"command", info.command}, {"date", info.date}, {"host", info.host},
            {"cores", info.cores}, {"jobs", info.jobs}, {"commit", info.commit}, {"seeds", info.seeds},
            {"train_flags", info.train_flags}, {"variants", json::array()}};
  for (const auto& v : vs) {
    json o = json::object();
    for (const auto& [f, x] : v.variant.overrides) o[f] = x;
    const auto bpb = v.val_bpbs();
    json jv = {{"name", v.variant.name}, {"binary", v.variant.binary}, {"overrides", o},
               {"parameters", v.params ? json(*v.params) : json(nullptr)},
               {"artifact_bytes", v.artifact_bytes() ? json(*v.artifact_bytes()) : json(nullptr)},
               {"step_ms", num_or_null(mean(v.step_ms()))}, {"val_bpb_mean", num_or_null(mean(bpb))},
               {"val_bpb_std", num_or_null(sample_std(bpb))}, {"roundtrip_val_bpb_mean", num_or_null(mean(v.roundtrips()))},
               {"error", v.error.empty() ? json(nullptr) : json(v.error)}, {"runs", json::array()}};
    for (const auto& r : v.runs) {
      json curve = json::array();
      for (const auto& p : r.metrics.val)
        curve.push_back({{"step", p.step}, {"val_loss", num_or_null(p.val_loss)}, {"val_bpb", num_or_null(p.val_bpb)},
                         {"train_time_ms", num_or_null(p.train_time_ms)}});
      jv["runs"].push_back({{"seed", r.seed}, {"status", r.ok ? "ok" : "failed"},
                            {"error", r.ok ? json(nullptr) : json(r.error)}, {"reused", r.reused}, {"dir", r.dir},
                            {"val_bpb", num_or_null(r.metrics.final_val_bpb())},
                            {"roundtrip_val_bpb", num_or_null(r.metrics.roundtrip_val_bpb.value_or(NAN))},
                            {"model_bytes", r.metrics.model_bytes ? json(*r.metrics.model_bytes) : json(nullptr)},
                            {"total_bytes", r.metrics.total_bytes ? json(*r.metrics.total_bytes) : json(nullptr)},
                            {"step_ms", num_or_null(r.metrics.step_ms())}, {"wall_s", r.wall_s}, {"val_curve", curve}});
    }
    j["variants"].push_back(jv);
  }
  return j;
}

// ---------------------------------------------------------------------------------------------
// SVG line plots

struct Series {
  std::string label;  // legend entry; empty: not in the legend
  int colour = 0;     // palette index
  std::vector<std::pair<double, double>> points;
  bool bold = false;
};

struct Plot {
  std::string title, x_label, y_label;
  std::vector<Series> series;
};

// Evenly spaced round ticks (1, 2 or 5 x 10^k apart) covering [lo, hi].
inline std::vector<double> nice_ticks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

inline std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

inline const char* palette(int i) {
  static const char* const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return colours[((i % 10) + 10) % 10];
}

inline std::string tick_label(double v, double step) {
  const int digits = step >= 1 ? 0 : std::min(6, int(std::ceil(-std::log10(step) - 1e-9)));
  return fixed(v, digits);
}

inline std::string svg_plot(const Plot& p) {
  const double W = 820, H = 500, left = 80, right = 230, top = 50, bottom = 70;
  const double pw = W - left - right, ph = H - top - bottom;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : p.series)
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  const bool empty = !(x0 <= x1);
  if (empty) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 <= 0) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 <= 0) y0 -= 0.05 * std::max(1.0, std::abs(y0)), y1 += 0.05 * std::max(1.0, std::abs(y1));
  const double ypad = (y1 - y0) * 0.05;
  y0 -= ypad, y1 += ypad;
  const auto xt = nice_ticks(x0, x1), yt = nice_ticks(y0, y1);
  const auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  const auto sy = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };
  const auto f1 = [](double v) { return fixed(v, 1); };

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + f1(W) + "\" height=\"" + f1(H) +
                  "\" viewBox=\"0 0 " + f1(W) + " " + f1(H) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + f1(left + pw / 2) + "\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">" + xml_escape(p.title) + "</text>\n";
  // Grid, ticks and their labels.
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double v : xt) {
    const std::string X = f1(sx(v));
    s += "<line x1=\"" + X + "\" y1=\"" + f1(top) + "\" x2=\"" + X + "\" y2=\"" + f1(top + ph) + "\" stroke=\"#e5e5e5\"/>\n";
    s += "<line x1=\"" + X + "\" y1=\"" + f1(top + ph) + "\" x2=\"" + X + "\" y2=\"" + f1(top + ph + 5) + "\" stroke=\"black\"/>\n";
    s += "<text x=\"" + X + "\" y=\"" + f1(top + ph + 19) + "\" text-anchor=\"middle\">" + tick_label(v, xstep) + "</text>\n";
  }
  for (double v : yt) {
    const std::string Y = f1(sy(v));
    s += "<line x1=\"" + f1(left) + "\" y1=\"" + Y + "\" x2=\"" + f1(left + pw) + "\" y2=\"" + Y + "\" stroke=\"#e5e5e5\"/>\n";
    s += "<line x1=\"" + f1(left - 5) + "\" y1=\"" + Y + "\" x2=\"" + f1(left) + "\" y2=\"" + Y + "\" stroke=\"black\"/>\n";
    s += "<text x=\"" + f1(left - 8) + "\" y=\"" + f1(sy(v) + 4) + "\" text-anchor=\"end\">" + tick_label(v, ystep) + "</text>\n";
  }
  s += "<rect x=\"" + f1(left) + "\" y=\"" + f1(top) + "\" width=\"" + f1(pw) + "\" height=\"" + f1(ph) +
       "\" fill=\"none\" stroke=\"black\"/>\n";
  s += "<text x=\"" + f1(left + pw / 2) + "\" y=\"" + f1(H - 20) + "\" text-anchor=\"middle\">" + xml_escape(p.x_label) + "</text>\n";
  s += "<text transform=\"translate(22," + f1(top + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
       xml_escape(p.y_label) + "</text>\n";
  if (empty)
    s += "<text x=\"" + f1(left + pw / 2) + "\" y=\"" + f1(top + ph / 2) + "\" text-anchor=\"middle\">no data</text>\n";

  // Thin runs first, bold means on top; a lone point still shows as a dot.
  std::vector<const Series*> order;
  for (const auto& se : p.series) order.push_back(&se);
  std::stable_sort(order.begin(), order.end(), [](const Series* a, const Series* b) { return !a->bold && b->bold; });
  for (const Series* se : order) {
    std::string pts;
    for (const auto& [x, y] : se->points)
      if (std::isfinite(x) && std::isfinite(y)) pts += f1(sx(x)) + "," + f1(sy(y)) + " ";
    if (pts.empty()) continue;
    pts.pop_back();
    const std::string colour = palette(se->colour);
    s += "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"" + (se->bold ? "2.8" : "1") + "\"" +
         (se->bold ? "" : " stroke-opacity=\"0.45\"") + " points=\"" + pts + "\"/>\n";
    if (se->bold)
      for (const auto& [x, y] : se->points)
        if (std::isfinite(x) && std::isfinite(y))
          s += "<circle cx=\"" + f1(sx(x)) + "\" cy=\"" + f1(sy(y)) + "\" r=\"3\" fill=\"" + colour + "\"/>\n";
  }
  // Legend: one entry per labelled series, then how to read the line weights.
  double ly = top + 10;
  const double lx = left + pw + 15;
  for (const auto& se : p.series) {
    if (se.label.empty()) continue;
    s += "<line x1=\"" + f1(lx) + "\" y1=\"" + f1(ly) + "\" x2=\"" + f1(lx + 24) + "\" y2=\"" + f1(ly) + "\" stroke=\"" +
         palette(se.colour) + "\" stroke-width=\"2.8\"/>\n";
    s += "<text x=\"" + f1(lx + 30) + "\" y=\"" + f1(ly + 4) + "\">" + xml_escape(se.label) + "</text>\n";
    ly += 18;
  }
  s += "<text x=\"" + f1(lx) + "\" y=\"" + f1(ly + 12) + "\" fill=\"#555\">bold: mean over seeds;</text>\n";
  s += "<text x=\"" + f1(lx) + "\" y=\"" + f1(ly + 26) + "\" fill=\"#555\">thin: each seed</text>\n";
  s += "</svg>\n";
  return s;
}

// The two plots of a race: val_bpb against step, or against training wall time (seconds).
inline Plot race_plot(const std::string& label, const std::vector<VariantResult>& vs, bool by_time) {
  Plot p{label + ": val_bpb against " + (by_time ? "training time" : "step"),
         by_time ? "training time (s)" : "step", "val_bpb", {}};
  int colour = 0;
  for (const auto& v : vs) {
    std::vector<std::vector<std::pair<double, double>>> curves;
    for (const auto& r : v.runs) {
      if (!r.ok) continue;
      std::vector<std::pair<double, double>> c;
      for (const auto& pt : r.metrics.val) c.emplace_back(by_time ? pt.train_time_ms / 1000.0 : double(pt.step), pt.val_bpb);
      p.series.push_back({"", colour, c, false});
      curves.push_back(std::move(c));
    }
    if (!curves.empty()) p.series.push_back({v.variant.name, colour, mean_curve(curves), true});
    ++colour;
  }
  return p;
}

}  // namespace pgolf::race
