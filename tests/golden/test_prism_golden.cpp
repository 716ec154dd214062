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
  M model(g.batch, g.seq);
  test::load_golden_weights(g, model);
  model.zero_grad();
  const double loss = model.forward(g.x, g.y);
  CHECK(loss == Approx(g.loss).epsilon(1e-12));
  CHECK(model.last_ce() == Approx(g.values.at("ce")).epsilon(1e-12));
  CHECK(model.last_aux() == Approx(g.values.at("aux")).epsilon(1e-10));
  model.backward();
  for (const auto& e : test::golden_gradient_errors(g, model)) {
    INFO(e.name << ": L2 error " << e.error << ", grad norm " << e.norm);
    // Dead tensors (PRISM.md 9.6) get a zero gradient on both sides, up to rounding noise where
    // the uniform read softmax is differentiated.
    if (e.norm < 1e-12) CHECK(e.error < 1e-12);
    else CHECK(e.error / e.norm < 1e-9);
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
