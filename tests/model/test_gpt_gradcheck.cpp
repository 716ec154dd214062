// Whole-model finite-difference checks in double precision: every parameter tensor of each tiny
// spec, on sampled entries, against the hand-written backward.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>

#include "gpt_test_specs.hpp"
#include "model_gradcheck.hpp"

using namespace pgolf;
using namespace pgolf::test;

template <GptSpec S>
void gradcheck_model(int batch, int seq, std::uint32_t stream) {
  Gpt<S, double> model(batch, seq);
  randomize(model, stream);
  const auto tokens = random_tokens(std::size_t(batch) * seq + 1, S.vocab, stream);
  const std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());

  model.zero_grad();
  model.forward(x, y);
  model.backward();
  check_every_tensor(model, [&] { return model.forward(x, y); }, 8);
}

TEST_CASE("whole-model gradients match finite differences: tiny baseline spec", "[gradcheck][gpt]") {
  gradcheck_model<kTiny>(2, 16, 1);
}

TEST_CASE("whole-model gradients match finite differences: partial RoPE, leaky, untied, no skips",
          "[gradcheck][gpt]") {
  gradcheck_model<kTinyVariant>(2, 12, 2);
}

TEST_CASE("whole-model gradients match finite differences: shared blocks (depth recurrence)",
          "[gradcheck][gpt]") {
  gradcheck_model<kTinyShared>(2, 8, 3);
}
