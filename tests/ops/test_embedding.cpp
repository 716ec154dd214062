#include <catch2/catch.hpp>

#include "pgolf/ops/cpu/embedding.hpp"
#include "../test_util.hpp"

using namespace pgolf;
using namespace pgolf::test;

TEST_CASE("embedding forward gathers table rows", "[forward][embedding]") {
  const int V = 7, d = 5;
  auto table = randn(V * d, 1);
  std::vector<std::int32_t> ids = {3, 0, 6, 3};
  std::vector<double> out(ids.size() * d, -99);
  ops::cpu::embedding_forward(ids.data(), ids.size(), table.data(), V, d, out.data());
  for (std::size_t n = 0; n < ids.size(); ++n)
    for (int c = 0; c < d; ++c) REQUIRE(out[n * d + c] == table[ids[n] * d + c]);
}

TEST_CASE("embedding backward matches finite differences (repeated ids)", "[gradcheck][embedding]") {
  const int V = 6, d = 4;
  auto table = randn(V * d, 2);
  std::vector<std::int32_t> ids = {1, 4, 1, 5, 1, 0};
  const auto r = randn(ids.size() * d, 3);
  std::vector<double> out(ids.size() * d), grad(V * d, 0.0);
  auto loss = [&] {
    ops::cpu::embedding_forward(ids.data(), ids.size(), table.data(), V, d, out.data());
    return weighted_sum(r, out.data());
  };
  ops::cpu::embedding_backward(ids.data(), ids.size(), r.data(), d, grad.data());
  REQUIRE(fd_max_error(loss, table.data(), grad.data(), table.size()) < 1e-6);
  // Rows never looked up get no gradient.
  for (int c = 0; c < d; ++c) REQUIRE(grad[2 * d + c] == 0.0);
}

TEST_CASE("embedding rejects ids outside the vocabulary", "[forward][embedding]") {
  const int V = 4, d = 2;
  std::vector<double> table(V * d), out(2 * d);
  std::vector<std::int32_t> ids = {1, 4};
  REQUIRE_THROWS_WITH(ops::cpu::embedding_forward(ids.data(), 2, table.data(), V, d, out.data()),
                      Catch::Contains("outside the vocabulary"));
}
