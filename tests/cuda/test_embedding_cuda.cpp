// The CUDA embedding against the CPU reference (fresh random inputs, poisoned outputs).
// Bounds: the fp32 gather is a copy, so exact; bf16 output is the round-to-nearest of each value
// (relative error <= 2^-8 per element); the backward sums fp32 rows in a fixed order, so it is
// compared with a double-precision reference (relative L2 < 1e-6) and must be bitwise identical
// across runs (the determinism the atomics-based reference lacks).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "embedding_kernels.hpp"
#include "pgolf/core/rng.hpp"
#include "pgolf/ops/cpu/embedding.hpp"

namespace {
// The CUDA backward run twice (bitwise equal) against the double-precision CPU reference.
void check_backward(const std::vector<std::int32_t>& ids, const std::vector<float>& dy, const std::vector<float>& g0,
                    int dim) {
  std::vector<float> g1 = g0, g2 = g0;
  cuda_embedding_backward_512(ids, dy, g1);
  cuda_embedding_backward_512(ids, dy, g2);
  CHECK(g1 == g2);
  std::vector<double> dyd(dy.begin(), dy.end()), gd(g0.begin(), g0.end());
  pgolf::ops::cpu::embedding_backward(ids.data(), ids.size(), dyd.data(), dim, gd.data());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < gd.size(); ++i) {
    REQUIRE(std::isfinite(g1[i]));
    num += (g1[i] - gd[i]) * (g1[i] - gd[i]);
    den += gd[i] * gd[i];
  }
  CHECK(std::sqrt(num / den) < 1e-6);
}
}  // namespace

TEST_CASE("CUDA embedding forward and deterministic backward match the CPU reference", "[cuda][embedding]") {
  const int vocab = 1024, dim = 512;
  const std::size_t n = 8192;
  std::vector<std::int32_t> ids(n);
  // Skewed ids: a few hot tokens (long runs) and many rare ones, as in text.
  for (std::size_t i = 0; i < n; ++i) {
    const double u = pgolf::uniform01(7, 1, i);
    ids[i] = std::int32_t(u * u * u * vocab);
  }
  std::vector<float> table(std::size_t(vocab) * dim), dy(n * dim), dtable0(table.size());
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = float(pgolf::normal01(7, 2, i));
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(pgolf::normal01(7, 3, i));
  for (std::size_t i = 0; i < dtable0.size(); ++i) dtable0[i] = float(pgolf::normal01(7, 4, i));

  std::vector<float> out, out_bf;
  cuda_embedding_forward_512(ids, table, out, out_bf);
  std::vector<float> ref(n * dim);
  pgolf::ops::cpu::embedding_forward(ids.data(), n, table.data(), vocab, dim, ref.data());
  for (std::size_t i = 0; i < ref.size(); ++i) {
    REQUIRE(out[i] == ref[i]);
    REQUIRE(std::abs(out_bf[i] - ref[i]) <= std::ldexp(std::abs(ref[i]), -8));
  }

  check_backward(ids, dy, dtable0, dim);
}

// The backward's chunking (64 rows per chunk, chunks summed per token in order): one token for every
// position (a single run of many chunks, the last one short), runs of exactly 64 and 65 rows, and a
// single position.
TEST_CASE("CUDA embedding backward: runs of one chunk, of many, and a last chunk cut short", "[cuda][embedding]") {
  const int vocab = 1024, dim = 512;
  std::vector<std::vector<std::int32_t>> cases;
  cases.push_back(std::vector<std::int32_t>(4133, 17));
  std::vector<std::int32_t> two(129);
  for (std::size_t i = 0; i < two.size(); ++i) two[i] = i % 2 ? 3 : 1000;  // 65 of token 1000, 64 of token 3
  cases.push_back(two);
  cases.push_back({vocab - 1});
  for (const auto& ids : cases) {
    INFO(ids.size() << " positions");
    const std::size_t n = ids.size();
    std::vector<float> dy(n * dim), g0(std::size_t(vocab) * dim);
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(pgolf::normal01(8, 1, i));
    for (std::size_t i = 0; i < g0.size(); ++i) g0[i] = float(pgolf::normal01(8, 2, i));
    check_backward(ids, dy, g0, dim);
  }
}
