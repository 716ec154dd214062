// Whole-model finite-difference checks in double precision: every parameter tensor of each tiny
// spec, on sampled entries, against the hand-written backward.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>

#include "gpt_test_specs.hpp"

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
  const std::vector<double> grad(model.grads().begin(), model.grads().end());
  auto loss = [&] { return model.forward(x, y); };

  for (const auto& info : decltype(model)::param_table) {
    // Up to 8 entries spread over the tensor (all of a small one).
    std::vector<std::size_t> idx;
    const std::size_t n = info.numel(), k = std::min<std::size_t>(n, 8);
    for (std::size_t j = 0; j < k; ++j) idx.push_back((j * n) / k + (j * 7919) % std::max<std::size_t>(1, n / k));
    // The losses here are O(10), so central differences (h = 1e-5) carry ~1e-9 absolute roundoff:
    // gradients below 1e-3 are held to that absolute error, larger ones to 1e-6 relative.
    const double err =
        fd_max_error(loss, model.params().data() + info.offset, grad.data() + info.offset, n, idx, 1e-5, 1e-3);
    INFO(info.name.c_str() << " max relative error " << err);
    CHECK(err < 1e-6);
  }
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
