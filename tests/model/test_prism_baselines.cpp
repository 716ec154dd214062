// The PRISM harness's baselines: parameter counts against PRISM.md 2.9, finite-difference gradients
// in double for the three mixers, and causality.
#include <catch2/catch.hpp>

#include <algorithm>

#include "pgolf/model/prism_baselines.hpp"
#include "model_gradcheck.hpp"
#include "prism_test_specs.hpp"

using namespace pgolf;
using namespace pgolf::test;

namespace {
constexpr PrismSpec kSmall{.vocab = 11, .d_model = 8, .layers = 2, .num_rates = 2, .num_slots = 2, .d_mem = 2};
constexpr PrismSpec kSmallUntied{.vocab = 11, .d_model = 8, .layers = 2, .num_rates = 2, .num_slots = 2, .d_mem = 2,
                                 .neural_hidden_mult = 3, .tie_embeddings = false};

template <class Model>
void gradcheck_baseline(int batch, int seq, std::uint32_t stream) {
  Model model(batch, seq);
  prism_randomize(model, stream);
  const auto x = prism_tokens(std::size_t(batch) * seq, Model::kVocab, stream);
  auto y = prism_tokens(std::size_t(batch) * seq, Model::kVocab, stream + 100);
  for (std::size_t i = 0; i < y.size(); i += 4) y[i] = -1;
  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 10);
}

template <class Model>
void check_causal() {
  constexpr int B = 2, T = 10, j = 5;
  Model model(B, T);
  prism_randomize(model, 9);
  auto x = prism_tokens(B * T, Model::kVocab, 10);
  const std::vector<std::int32_t> y(B * T, 1);
  model.forward(x, y);
  const std::vector<double> before(model.logits().begin(), model.logits().end());
  for (int b = 0; b < B; ++b) x[std::size_t(b) * T + j] = (x[std::size_t(b) * T + j] + 3) % Model::kVocab;
  model.forward(x, y);
  double early = 0, late = 0;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int v = 0; v < Model::kVocab; ++v) {
        const std::size_t k = (std::size_t(b) * T + t) * Model::kVocab + v;
        (t < j ? early : late) = std::max(t < j ? early : late, std::abs(before[k] - model.logits()[k]));
      }
  CHECK(early == 0.0);
  CHECK(late > 1e-6);
}
}  // namespace

TEST_CASE("PRISM baselines: parameter counts match PRISM.md 2.9", "[forward][prism][baseline]") {
  using prism_presets::toy;
  CHECK(table_size(baseline_param_table<toy(12), BaselineMixer::transformer>()) == 124096);
  CHECK(table_size(baseline_param_table<toy(18), BaselineMixer::transformer>()) == 124480);
  CHECK(table_size(baseline_param_table<toy(257), BaselineMixer::transformer>()) == 139776);
  CHECK(table_size(baseline_param_table<toy(12), BaselineMixer::transformer_rope>()) == 124096);
  CHECK(table_size(baseline_param_table<toy(12), BaselineMixer::ssm>()) == 81331);
  CHECK(table_size(baseline_param_table<toy(18), BaselineMixer::ssm>()) == 81715);
  CHECK(table_size(baseline_param_table<toy(257), BaselineMixer::ssm>()) == 97011);
}

TEST_CASE("PRISM baselines: gradients match finite differences", "[gradcheck][prism][baseline]") {
  gradcheck_baseline<PrismBaseline<kSmall, BaselineMixer::transformer, double>>(2, 6, 1);
  gradcheck_baseline<PrismBaseline<kSmall, BaselineMixer::transformer_rope, double>>(2, 6, 2);
  gradcheck_baseline<PrismBaseline<kSmallUntied, BaselineMixer::ssm, double>>(2, 6, 3);
  gradcheck_baseline<PrismBaseline<kSmall, BaselineMixer::ssm, double>>(3, 5, 4);
}

TEST_CASE("PRISM baselines are causal", "[forward][prism][baseline]") {
  check_causal<PrismBaseline<kSmall, BaselineMixer::transformer, double>>();
  check_causal<PrismBaseline<kSmall, BaselineMixer::transformer_rope, double>>();
  check_causal<PrismBaseline<kSmall, BaselineMixer::ssm, double>>();
}
