// Prism<Spec, double> in the reference behaviour against golden outputs of the PyTorch port of
// AFKmoney/prism (tests/golden/make_prism_golden.py): the same weights and tokens must give the same
// loss (CE and aux) and the same gradient for every tensor, dead ones included.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "golden_file.hpp"
#include "pgolf/model/prism.hpp"

using namespace pgolf;

namespace {

template <PrismSpec S>
std::string prism_spec_line() {
  return "vocab=" + std::to_string(S.vocab) + " d=" + std::to_string(S.d_model) + " layers=" + std::to_string(S.layers) +
         " k=" + std::to_string(S.num_rates) + " m=" + std::to_string(S.d_mem) + " slots=" + std::to_string(S.num_slots) +
         " mult=" + std::to_string(S.neural_hidden_mult) + " topk=" + std::to_string(S.router_topk) +
         " tied=" + std::to_string(S.tie_embeddings ? 1 : 0);
}

template <PrismSpec S>
void check_prism_golden(const std::string& name) {
  const test::Golden g = test::load_golden(name);
  REQUIRE(g.spec == prism_spec_line<S>());
  using M = Prism<S, double>;
  REQUIRE(g.params.size() == M::param_table.size());
  M model(g.batch, g.seq);
  std::size_t at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    REQUIRE(g.params[i].first == M::param_table[i].name.view());
    REQUIRE(g.params[i].second == M::param_table[i].numel());
    std::copy(g.weights.begin() + std::ptrdiff_t(at), g.weights.begin() + std::ptrdiff_t(at + g.params[i].second),
              model.param(i));
    at += g.params[i].second;
  }
  model.zero_grad();
  const double loss = model.forward(g.x, g.y);
  CHECK(loss == Approx(g.loss).epsilon(1e-12));
  CHECK(model.last_ce() == Approx(g.values.at("ce")).epsilon(1e-12));
  CHECK(model.last_aux() == Approx(g.values.at("aux")).epsilon(1e-10));
  model.backward();
  at = 0;
  for (std::size_t i = 0; i < g.params.size(); ++i) {
    double num = 0, den = 0;
    for (std::size_t j = 0; j < g.params[i].second; ++j) {
      const double e = model.grads()[M::param_table[i].offset + j] - g.grads[at + j];
      num += e * e;
      den += g.grads[at + j] * g.grads[at + j];
    }
    at += g.params[i].second;
    INFO(g.params[i].first << ": L2 error " << std::sqrt(num) << ", grad norm " << std::sqrt(den));
    // Dead tensors (PRISM.md 9.6) get a zero gradient on both sides, up to rounding noise where
    // the uniform read softmax is differentiated.
    if (den < 1e-24) CHECK(std::sqrt(num) < 1e-12);
    else CHECK(std::sqrt(num / den) < 1e-9);
  }
}

constexpr PrismSpec kTop1{.vocab = 32, .d_model = 16, .layers = 3, .num_rates = 4, .num_slots = 4, .d_mem = 8,
                          .behaviour = PrismBehaviour::reference};
constexpr PrismSpec kTop2{.vocab = 32, .d_model = 16, .layers = 2, .num_rates = 4, .num_slots = 4, .d_mem = 8,
                          .router_topk = 2, .neural_hidden_mult = 3, .tie_embeddings = false,
                          .behaviour = PrismBehaviour::reference};

}  // namespace

TEST_CASE("PRISM reference behaviour matches the PyTorch port: top-1, tied", "[golden][prism]") {
  check_prism_golden<kTop1>("prism_reference_top1");
}
TEST_CASE("PRISM reference behaviour matches the PyTorch port: top-2, untied", "[golden][prism]") {
  check_prism_golden<kTop2>("prism_reference_top2");
}
