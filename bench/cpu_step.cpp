// CPU step benchmark: full training steps of the Trainer (loader, forward, backward, Muon, Adam)
// on the bundled FineWeb shard, for the tiny preset (the spec of pgolf-tiny), the same with
// document-masked attention (tiny-docs: no query sees past its BOS), or the baseline spec.
// Reports the mean and spread of ms/step after warm-up steps, and tokens/s. A benchmark, never a
// test: the figures depend on the machine.
//
//   pgolf-bench-cpu-step [--spec tiny|tiny-docs|baseline] [--batch-tokens N] [--seq T] [--steps S] [--warmup W]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <omp.h>

#include <CLI/CLI.hpp>

#include <pgolf/pgolf.hpp>

namespace {

constexpr pgolf::GptSpec kTiny{
    .vocab = 1024, .dim = 128, .depth = {.layers = 4}, .attention = {.heads = 4, .kv_heads = 2, .rope_dims = 32}};
constexpr pgolf::GptSpec kTinyDocs = [] {
  pgolf::GptSpec s = kTiny;
  s.attention.doc_mask = true;
  return s;
}();
constexpr pgolf::GptSpec kBaseline{};

template <pgolf::GptSpec S>
int bench(const char* name, pgolf::TrainConfig cfg, int steps, int warmup) {
  using Model = pgolf::Gpt<S, float>;
  pgolf::RunLog quiet;
  cfg.iterations = warmup + steps;
  pgolf::Trainer<Model> tr(cfg, quiet);
  const auto r = tr.run();
  std::vector<double> ms;
  for (std::size_t i = std::size_t(warmup); i < r.train.size(); ++i)
    ms.push_back(r.train[i].train_ms - (i > 0 ? r.train[i - 1].train_ms : 0.0));
  double mean = 0, var = 0;
  for (double v : ms) mean += v / double(ms.size());
  for (double v : ms) var += (v - mean) * (v - mean) / double(std::max<std::size_t>(1, ms.size() - 1));
  std::printf("spec %s params %zu batch_tokens %lld seq %d micro_batch_seqs %d threads %d\n", name, Model::num_params,
              cfg.train_batch_tokens, cfg.train_seq_len, cfg.micro_batch_rows(), omp_get_max_threads());
  std::printf("pgolf train step: %.1f ms +- %.1f over %d steps, %.0f tokens/s\n", mean, std::sqrt(var), steps,
              double(cfg.train_batch_tokens) / (mean / 1e3));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec = "tiny";
  pgolf::TrainConfig cfg = pgolf::app::with_bundled_data({});
  cfg.train_batch_tokens = 8192;
  cfg.train_seq_len = 256;
  cfg.micro_batch_tokens = 8192;
  cfg.max_wallclock_seconds = 0;
  cfg.warmdown_iters = 0;
  cfg.val_loss_every = 0;
  cfg.train_log_every = 0;
  cfg.val_tokens = 257;  // the trainer validates once at the end; keep that out of the way
  int steps = 10, warmup = 2;
  CLI::App app("pgolf CPU training-step benchmark", "pgolf-bench-cpu-step");
  app.add_option("--spec", spec)->check(CLI::IsMember({"tiny", "tiny-docs", "baseline"}))->capture_default_str();
  app.add_option("--batch-tokens", cfg.train_batch_tokens)->capture_default_str();
  app.add_option("--seq", cfg.train_seq_len)->capture_default_str();
  app.add_option("--micro-batch-tokens", cfg.micro_batch_tokens)->capture_default_str();
  app.add_option("--steps", steps)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", warmup)->check(CLI::NonNegativeNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (cfg.val_tokens <= cfg.train_seq_len) cfg.val_tokens = cfg.train_seq_len + 1;
  try {
    if (spec == "tiny") return bench<kTiny>("tiny", cfg, steps, warmup);
    if (spec == "tiny-docs") return bench<kTinyDocs>("tiny-docs", cfg, steps, warmup);
    return bench<kBaseline>("baseline", cfg, steps, warmup);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
