// pgolf-race's pure parts (tools/race.hpp): inputs, run records, the resume decision, statistics,
// the results table and JSON, the SVG writer.
#include <catch2/catch.hpp>

#include "race.hpp"

using namespace pgolf::race;
using Catch::Matchers::Contains;

namespace {

const char* kManifest = R"({
  "name": "grid",
  "base": "/src/tiny.cpp",
  "source_dir": "/src",
  "fields": ["mlp.mult", "mlp.activation"],
  "points": [
    {"name": "grid-mlp_mult-1-mlp_activation-pgolf__Activation__relu2", "binary": "/b/grid-1",
     "overrides": {"mlp.mult": "1", "mlp.activation": "pgolf::Activation::relu2"}},
    {"name": "grid-mlp_mult-2-mlp_activation-pgolf__Activation__relu2", "binary": "/b/grid-2",
     "overrides": {"mlp.mult": "2", "mlp.activation": "pgolf::Activation::relu2"}}
  ]
})";

std::string metrics_text(double final_bpb, bool exported) {
  std::string s =
      R"({"event":"config","iterations":4,"seed":1})" "\n"
      R"({"event":"variant","variant":"v","model_params":5000,"code_bytes":10,"ablation":"mlp.mult=1"})" "\n"
      R"({"event":"val","step":0,"val_loss":6.9,"val_bpb":4.1,"val_tokens":4096,"val_bytes":9000,"train_time_ms":0})" "\n"
      R"({"event":"train","step":1,"train_loss":6.9,"lr_scale":1,"train_time_ms":50})" "\n"
      R"({"event":"val","step":4,"val_loss":6.0,"val_bpb":)" + std::to_string(final_bpb) +
      R"(,"val_tokens":4096,"val_bytes":9000,"train_time_ms":200})" "\n";
  if (exported)
    s += R"({"event":"export","artifact":"m.pgolf","codec":"zlib","model_bytes":4321,"payload_bytes":4000,)"
         R"("code_bytes":10,"total_bytes":4331,"roundtrip_val_loss":6.01,"roundtrip_val_bpb":3.51})" "\n";
  return s;
}

VariantResult variant(const std::string& name, std::vector<double> bpbs) {
  VariantResult v{{name, "/b/" + name, {{"mlp.mult", "2"}}}, 5000, {}, {}};
  std::uint64_t seed = 1;
  for (double b : bpbs) {
    RunResult r;
    r.seed = seed++;
    r.ok = true;
    r.metrics = parse_metrics(metrics_text(b, true));
    r.dir = "runs/" + name + "/seed" + std::to_string(r.seed);
    v.runs.push_back(r);
  }
  return v;
}

RaceInfo race_info() {
  RaceInfo info;
  info.label = "grid";
  info.command = "pgolf-race --seeds 1,2";
  info.date = "2025-01-01 00:00:00 UTC";
  info.host = "host";
  info.cores = 2;
  info.seeds = {1, 2};
  return info;
}

}  // namespace

TEST_CASE("the manifest of pgolf_add_ablation parses, bad ones are named", "[race]") {
  const Manifest m = parse_manifest(kManifest, "grid.ablation.json");
  CHECK(m.name == "grid");
  CHECK(m.source_dir == "/src");
  REQUIRE(m.variants.size() == 2);
  CHECK(m.variants[1].binary == "/b/grid-2");
  REQUIRE(m.variants[1].overrides.size() == 2);
  CHECK(overrides_text(m.variants[1]) == "mlp.activation=pgolf::Activation::relu2 mlp.mult=2");

  CHECK_THROWS_WITH(parse_manifest("{\"name\": ", "m.json"), Contains("manifest m.json is not valid JSON"));
  CHECK_THROWS_WITH(parse_manifest("{\"name\": \"x\"}", "m.json"), Contains("the top level has no \"points\""));
  CHECK_THROWS_WITH(parse_manifest("{\"name\": \"x\", \"points\": []}", "m.json"), Contains("\"points\" is empty"));
  CHECK_THROWS_WITH(parse_manifest(R"({"name": "x", "points": [{"name": "a"}]})", "m.json"),
                    Contains("points[0] has no \"binary\""));
  CHECK_THROWS_WITH(parse_manifest(R"({"name": "x", "points": [{"name": "a", "binary": 3}]})", "m.json"),
                    Contains("points[0].binary must be a string"));
}

TEST_CASE("binaries, names, seeds and train flags", "[race]") {
  CHECK(variant_from_binary("build/examples/pgolf-tiny").name == "pgolf-tiny");
  CHECK(variant_from_binary("pgolf-tiny").name == "pgolf-tiny");
  CHECK_THROWS_WITH(variant_from_binary("/"), Contains("does not name a binary"));
  CHECK_NOTHROW(check_unique_names({{"a", "/x/a", {}}, {"b", "/x/b", {}}}));
  CHECK_THROWS_WITH(check_unique_names({{"a", "/x/a", {}}, {"a", "/y/a", {}}}), Contains("two variants are named 'a'"));
  CHECK_THROWS_WITH(check_unique_names({}), Contains("no variants"));

  CHECK(parse_seeds("1337,1338, 1339") == std::vector<std::uint64_t>{1337, 1338, 1339});
  CHECK(parse_seeds("0") == std::vector<std::uint64_t>{0});
  CHECK_THROWS_WITH(parse_seeds(""), Contains("no seeds given"));
  CHECK_THROWS_WITH(parse_seeds("1,,2"), Contains("an empty entry"));
  CHECK_THROWS_WITH(parse_seeds("1,-2"), Contains("'-2' is not a non-negative integer"));
  CHECK_THROWS_WITH(parse_seeds("7,7"), Contains("seed 7 is listed twice"));

  CHECK_NOTHROW(check_train_flags({"--iterations", "4", "--seed-like"}));
  CHECK_THROWS_WITH(check_train_flags({"--seed", "3"}), Contains("sets --seed from --seeds"));
  CHECK_THROWS_WITH(check_train_flags({"--out-dir=x"}), Contains("sets --out-dir itself"));
}

TEST_CASE("metrics.jsonl, info and stderr are read", "[race]") {
  const RunMetrics m = parse_metrics(metrics_text(3.5, true) + "{\"event\":\"val\",\"step\":");  // torn last line
  CHECK(m.model_params == 5000);
  REQUIRE(m.val.size() == 2);
  CHECK(m.val[1].step == 4);
  CHECK(m.final_val_bpb() == Approx(3.5));
  CHECK(m.step_ms() == Approx(50.0));
  CHECK(m.model_bytes == 4321);
  CHECK(m.total_bytes == 4331);
  CHECK(m.roundtrip_val_bpb == Approx(3.51));
  CHECK(m.complete());
  CHECK_FALSE(parse_metrics(metrics_text(3.5, false)).complete());
  CHECK_FALSE(parse_metrics("").complete());

  CHECK(parse_info_params("parameter ...\ntotal parameters: 592144\ncode bytes: 1\n") == 592144);
  CHECK_FALSE(parse_info_params("hello").has_value());
  // A grid point's overrides from its `info`, for a binary raced without its manifest.
  using Overrides = std::vector<std::pair<std::string, std::string>>;
  CHECK(parse_info_overrides("spec ...\nablation: mlp.mult=3 depth.loop_embedding=pgolf::LoopEmbedding::off\ntotal") ==
        Overrides{{"mlp.mult", "3"}, {"depth.loop_embedding", "pgolf::LoopEmbedding::off"}});
  CHECK(parse_info_overrides("ablation: depth=Depth{.layers = 6}\n") == Overrides{{"depth", "Depth{.layers = 6}"}});
  CHECK(parse_info_overrides("total parameters: 5\n").empty());

  CHECK(last_line("a\nerror: data path x is not a directory\n\n") == "error: data path x is not a directory");
  CHECK(last_line("only") == "only");
  CHECK(last_line("\n \n").empty());
}

TEST_CASE("resume: only a complete run with the same command and binary is skipped", "[race]") {
  const std::vector<std::string> cmd = {"/b/v", "train", "--seed", "1"};
  const std::string ok = to_json(RunRecord{true, "", cmd, "100@5", 2.0}).dump();
  const auto decide = [&](RunDirState s, std::vector<std::string> c = {}, std::string stamp = "100@5") {
    return decide_resume(s, c.empty() ? cmd : c, stamp);
  };
  CHECK(decide({false, true, {}, false}).action == Action::run);
  CHECK(decide({true, true, {}, false}).action == Action::run);
  CHECK(decide({true, false, ok, true}).action == Action::skip);

  const Decision partial = decide({true, false, std::nullopt, false});
  CHECK(partial.action == Action::redo);
  CHECK_THAT(partial.reason, Contains("partial"));
  CHECK(decide({true, false, std::string("{torn"), true}).action == Action::redo);
  const Decision failed = decide({true, false, to_json(RunRecord{false, "exit status 3", cmd, "100@5", 1}).dump(), false});
  CHECK(failed.action == Action::redo);
  CHECK_THAT(failed.reason, Contains("exit status 3"));
  CHECK_THAT(decide({true, false, ok, true}, {"/b/v", "train", "--seed", "2"}).reason, Contains("recipe changed"));
  CHECK_THAT(decide({true, false, ok, true}, {}, "101@6").reason, Contains("binary changed"));
  CHECK_THAT(decide({true, false, ok, false}).reason, Contains("incomplete"));

  const auto back = parse_record(ok);
  REQUIRE(back);
  CHECK(back->ok);
  CHECK(back->command == cmd);
  CHECK(back->wall_s == 2.0);
}

TEST_CASE("statistics", "[race]") {
  CHECK(mean({1, 2, 3, 4}) == Approx(2.5));
  CHECK(sample_std({1, 2, 3, 4}) == Approx(1.2909944487));  // sqrt(5/3)
  CHECK(std::isnan(mean({})));
  CHECK(std::isnan(sample_std({2.0})));
  const auto c = mean_curve({{{0, 4}, {2, 3}, {4, 2}}, {{0, 6}, {2, 5}}});
  REQUIRE(c.size() == 2);  // only the points every curve has
  CHECK(c[1].first == Approx(2));
  CHECK(c[1].second == Approx(4));
}

TEST_CASE("the results table and JSON: rows, failures, spreads", "[race]") {
  std::vector<VariantResult> vs = {variant("a", {3.5, 3.7}), variant("b", {3.6, 3.6})};
  vs[1].runs[1].ok = false;
  vs[1].runs[1].error = "killed by signal 9 (SIGKILL)";
  VariantResult missing{{"gone", "/nope/gone", {}}, std::nullopt, "binary not found: /nope/gone", {}};
  vs.push_back(missing);
  const RaceInfo info = race_info();
  const std::string md = results_markdown(info, vs);
  CHECK_THAT(md, Contains("| variant | overrides | parameters | artifact bytes | step ms | val_bpb seed 1 | val_bpb seed 2 | "
                          "val_bpb mean | val_bpb std | round-trip val_bpb mean | status |"));
  CHECK_THAT(md, Contains("| a | mlp.mult=2 | 5000 | 4321 | 50.0 | 3.5000 | 3.7000 | 3.6000 | 0.1414 | 3.5100 | ok |"));
  CHECK_THAT(md, Contains("| b | mlp.mult=2 | 5000 | 4321 | 50.0 | 3.6000 | failed | 3.6000 | - | 3.5100 | 1 of 2 runs failed |"));
  CHECK_THAT(md, Contains("| gone | - | - | - | - | - | - | - | - | - | error: binary not found: /nope/gone |"));
  CHECK_THAT(md, Contains("## Failed\n\n- gone (/nope/gone): binary not found: /nope/gone\n"
                          "- b seed 2: killed by signal 9 (SIGKILL) (runs/b/seed2)\n"));
  CHECK_THAT(md, Contains("2 cores"));
  CHECK_THAT(md, Contains("commit unknown"));
  CHECK(md_cell("a|b") == "a\\|b");

  const json j = results_json(info, vs);
  REQUIRE(j["variants"].size() == 3);
  CHECK(j["variants"][0]["val_bpb_std"].get<double>() == Approx(0.141421356));
  CHECK(j["variants"][0]["overrides"]["mlp.mult"] == "2");
  CHECK(j["variants"][0]["runs"][0]["val_curve"].size() == 2);
  CHECK(j["variants"][1]["val_bpb_std"].is_null());
  CHECK(j["variants"][1]["runs"][1]["error"] == "killed by signal 9 (SIGKILL)");
  CHECK(j["variants"][2]["parameters"].is_null());
  CHECK(j["variants"][2]["error"] == "binary not found: /nope/gone");
}

TEST_CASE("SVG plots: ticks, every seed, bold means, legend, escaping", "[race]") {
  CHECK(nice_ticks(0, 10) == std::vector<double>{0, 2, 4, 6, 8, 10});
  const auto t = nice_ticks(3.43, 3.71);
  REQUIRE(t.size() >= 3);
  CHECK(t.front() >= 3.43);
  CHECK(t.back() <= 3.71);
  CHECK(t[1] - t[0] == Approx(0.1));  // 3.5, 3.6, 3.7
  CHECK(nice_ticks(2, 2) == std::vector<double>{2});

  std::vector<VariantResult> vs = {variant("a<1>", {3.5, 3.7}), variant("b", {3.6})};
  const std::string by_step = svg_plot(race_plot("grid", vs, false));
  CHECK(by_step.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK_THAT(by_step, Contains("</svg>"));
  CHECK_THAT(by_step, Contains("grid: val_bpb against step"));
  CHECK_THAT(by_step, Contains(">a&lt;1&gt;</text>"));  // legend, escaped
  CHECK_THAT(by_step, Contains(">b</text>"));
  std::size_t lines = 0, bold = 0;
  for (std::size_t at = 0; (at = by_step.find("<polyline", at)) != std::string::npos; ++at) ++lines;
  for (std::size_t at = 0; (at = by_step.find("stroke-width=\"2.8\" points", at)) != std::string::npos; ++at) ++bold;
  CHECK(lines == 5);  // 3 seeds + 2 means
  CHECK(bold == 2);
  CHECK_THAT(by_step, Contains(">step</text>"));
  CHECK_THAT(by_step, Contains(">val_bpb</text>"));

  const std::string by_time = svg_plot(race_plot("grid", vs, true));
  CHECK_THAT(by_time, Contains("training time (s)"));
  CHECK_THAT(svg_plot(Plot{"empty", "x", "y", {}}), Contains("no data"));
}
