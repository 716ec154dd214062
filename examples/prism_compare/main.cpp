// pgolf-prism-compare: PRISM (causal and reference behaviours) against the reference's baselines and
// pgolf's GPT on a toy task, several seeds, held-out evaluation. Prints a table, writes JSON.
//
//   pgolf-prism-compare --task induction --steps 400 --seeds 3 --json induction.json
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "models.hpp"
#include "pgolf/ops/cpu/blas.hpp"

namespace {
// The scale presets: parameter counts of both behaviours, the reference's against PRISM.md 2.10's
// closed form (V D + (L - 1) full block + last block + D).
template <pgolf::PrismSpec S>
void print_preset(const char* name) {
  using namespace pgolf;
  constexpr PrismSpec ref = [] {
    PrismSpec r = S;
    r.behaviour = PrismBehaviour::reference;
    return r;
  }();
  const long long D = S.d_model, H = S.hidden();
  const long long closed = S.vocab * D +
                           (S.layers - 1) * prism_block_params(D, S.num_rates, S.d_mem, H, 3, true) +
                           prism_block_params(D, S.num_rates, S.d_mem, H, 2, false) + D;
  const long long r = (long long)table_size(prism_layout<ref>().table);
  std::printf("%-6s D %4d L %2d K %d M %4d S %2d top-%d H %dD  reference %12lld (closed form %s)  causal %12lld\n",
              name, S.d_model, S.layers, S.num_rates, S.d_mem, S.num_slots, S.router_topk, S.neural_hidden_mult, r,
              r == closed ? "matches" : "DIFFERS", (long long)table_size(prism_layout<S>().table));
}
}  // namespace

int main(int argc, char** argv) {
  using namespace pgolf;
  app::CompareOptions o;
  std::string task = "induction", json, models;
  int seeds = 3;
  o.task_options.corpus_path = PGOLF_TEXT_CORPUS;
  CLI::App cli("PRISM vs baselines on a toy task (held-out, multi-seed)", "pgolf-prism-compare");
  cli.add_option("--task", task, "copy | induction | reasoning | reasoning_leaky | mini_lm | mixture")
      ->capture_default_str();
  cli.add_flag("--curriculum", o.curriculum, "with --task mixture: the reference's phase-dependent data weights");
  cli.add_option("--token-recycling", o.token_recycling, "token recycling strength for the PRISM models (0: off)")
      ->capture_default_str();
  cli.add_option("--steps", o.steps, "optimizer steps per run")->capture_default_str();
  cli.add_option("--seeds", seeds, "seeds 0..N-1")->capture_default_str();
  cli.add_option("--batch", o.batch, "sequences per step")->capture_default_str();
  cli.add_option("--lr", o.lr, "AdamW peak learning rate")->capture_default_str();
  cli.add_option("--eval-sequences", o.task_options.eval_sequences, "held-out sequences per seed")->capture_default_str();
  cli.add_option("--corpus", o.task_options.corpus_path, "mini_lm text file (last 10% held out)")->capture_default_str();
  cli.add_option("--models", models,
                 "comma-separated subset of prism_causal,prism_reference,transformer,transformer_rope,ssm,gpt,prism_modular");
  cli.add_option("--modular-steps", o.modular_steps,
                 "also train prism_modular: single-kind pretraining of N steps per kind, assembled, then --steps")
      ->capture_default_str();
  bool presets = false;
  cli.add_flag("--presets", presets, "print the scale presets' parameter counts and exit");
  cli.add_option("--json", json, "write the results (with per-block routing and gate statistics) here");
  CLI11_PARSE(cli, argc, argv);
  if (presets) {
    print_preset<prism_presets::tiny>("tiny");
    print_preset<prism_presets::p300m>("300m");
    print_preset<prism_presets::p350m>("350m");
    print_preset<prism_presets::p1b>("1b");
    return 0;
  }
  try {
    o.mixture = task == "mixture";
    PGOLF_CHECK(!o.curriculum || o.mixture, "--curriculum needs --task mixture");
    if (!o.mixture) o.task = data::parse_toy_task(task);
    PGOLF_CHECK(seeds > 0, "--seeds must be positive, got ", seeds);
    PGOLF_CHECK(o.steps > 0 && o.batch > 0, "--steps and --batch must be positive");
    o.seeds.clear();
    for (int s = 0; s < seeds; ++s) o.seeds.push_back(std::uint64_t(s));
    std::stringstream ss(models);
    for (std::string m; std::getline(ss, m, ',');)
      if (!m.empty()) o.models.push_back(m);
    const int V = o.mixture ? 0 : data::toy_vocab(o.task, o.task_options);
    std::vector<app::CompareRow> rows;
    switch (V) {
      case 0: rows = prism_compare::compare_mixture(o); break;
      case 12: rows = prism_compare::compare_vocab12(o); break;
      case 18: rows = prism_compare::compare_vocab18(o); break;
      case 20: rows = prism_compare::compare_vocab20(o); break;
      case 257: rows = prism_compare::compare_vocab257(o); break;
      default: PGOLF_FAIL("no model is compiled for vocabulary ", V);
    }
    app::print_compare_table(o, rows);
    if (!json.empty()) {
      std::ofstream f(json);
      PGOLF_CHECK(f.good(), "cannot write ", json);
      f << app::compare_json(o, rows);
      std::printf("wrote %s\n", json.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
