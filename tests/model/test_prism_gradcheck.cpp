// PRISM whole-model finite-difference checks in double precision: every parameter tensor, both
// behaviours, top-1 and top-2 routing, tied and untied heads, another expert mix. The loss is the
// trained one (masked CE + load balance - read entropy), so the aux terms' gradients are checked too.
// The router and the symbolic library use straight-through estimators, whose gradient is not the
// derivative of the forward: finite differences run with the decisions frozen (freeze_decisions),
// where the loss is smooth and its derivative is exactly the straight-through gradient.
#include <catch2/catch.hpp>

#include <algorithm>

#include "model_gradcheck.hpp"
#include "prism_test_specs.hpp"

using namespace pgolf;
using namespace pgolf::test;

template <PrismSpec S>
void gradcheck_prism(int batch, int seq, std::uint32_t stream) {
  Prism<S, double> model(batch, seq);
  prism_randomize(model, stream);
  const auto x = prism_tokens(std::size_t(batch) * seq, S.vocab, stream);
  auto y = prism_tokens(std::size_t(batch) * seq, S.vocab, stream + 100);
  for (std::size_t i = 0; i < y.size(); i += 3) y[i] = -1;  // unscored positions

  model.zero_grad();
  model.forward(x, y);
  model.backward();
  // The straight-through estimators' gradients are derivatives of the loss with the discrete
  // decisions and stop-gradient values held at this point.
  model.freeze_decisions(true);
  check_every_tensor(model, [&] { return model.forward(x, y); }, 10);
}

TEST_CASE("PRISM gradients match finite differences: causal, top-1, tied", "[gradcheck][prism]") {
  gradcheck_prism<kPrismTiny>(2, 7, 1);
}
TEST_CASE("PRISM gradients match finite differences: reference, top-1, tied", "[gradcheck][prism]") {
  gradcheck_prism<kPrismTinyRef>(2, 7, 2);
}
TEST_CASE("PRISM gradients match finite differences: causal, top-2, untied", "[gradcheck][prism]") {
  gradcheck_prism<kPrismTop2>(3, 5, 3);
}
TEST_CASE("PRISM gradients match finite differences: reference, top-2, untied", "[gradcheck][prism]") {
  gradcheck_prism<kPrismTop2Ref>(3, 5, 4);
}
TEST_CASE("PRISM gradients match finite differences: symbolic + memory mix", "[gradcheck][prism]") {
  gradcheck_prism<kPrismMix>(2, 6, 5);
}
